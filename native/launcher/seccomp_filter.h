/*
 * The container's seccomp filter for the native `exec`, built with libseccomp from the
 * recorded `linux.seccomp` object exactly as pyruntime.linux.seccomp builds it (which
 * stays the reference), and loaded by the process. libseccomp is opened with dlopen, and
 * only for a container that has a profile: the other commands do not pay for loading it.
 */
#ifndef PYRUNTIME_SECCOMP_FILTER_H
#define PYRUNTIME_SECCOMP_FILTER_H

struct seccomp_filter {
    void *library;
    void *context;
};

/*
 * Build the filter of the profile (a JSON object between `profile` and `end`). Returns 0,
 * or -1 with nothing held when the profile holds anything Python would refuse or that
 * this builder does not take (SCMP_ACT_NOTIFY, a listener, a value beyond 2^63): the
 * exec then goes to Python.
 */
int seccomp_filter_build(const char *profile, const char *end, struct seccomp_filter *filter);

/* In the process, at the point Python loads it: 0, or a negative errno. */
int seccomp_filter_load(const struct seccomp_filter *filter);

void seccomp_filter_release(struct seccomp_filter *filter);

#endif
