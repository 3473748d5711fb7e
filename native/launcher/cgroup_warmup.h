/*
 * Starting the kernel's wait for a cgroup attach before Python starts (cgroup_warmup.c).
 */
#ifndef PYRUNTIME_CGROUP_WARMUP_H
#define PYRUNTIME_CGROUP_WARMUP_H

#include <sys/types.h>

/* Fork the child that keeps the cgroup lock warm; its pid, or -1. */
pid_t start_cgroup_warmup(void);

#endif
