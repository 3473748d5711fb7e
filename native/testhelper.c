/*
 * testhelper: a static multi-call program for the tests' containers (in the spirit of
 * crun's test init). `testhelper MODE [ARGS]`:
 *
 *   true                      exit 0
 *   sleep SECONDS|inf         sleep (fractions allowed), then exit 0
 *   memhog MIB                allocate and touch MIB mebibytes, 1 MiB at a time, printing
 *                             progress every 8 MiB, then hold them forever (so that a memory
 *                             limit below MIB ends in an OOM kill)
 *   cpuhog [SECONDS]          spin on the CPU forever (or SECONDS), then exit 0
 *   forkbomb [--max N] [--hold SECONDS]
 *                             fork children that sleep until fork fails (or N children,
 *                             default 512, a guard for a host without a limit), print
 *                             "forkbomb: N children, fork failed: REASON", then wait
 *                             forever (or SECONDS, then kill the children and exit 0)
 *   zombies N [SECONDS]       make N children that exit at once and never reap them;
 *                             print "zombies: PID PID ..." and sleep forever (or SECONDS,
 *                             then exit: the zombies become orphans for PID 1 to reap)
 *   fds                       one line "FD TARGET" per open fd (readlink of
 *                             /proc/self/fd/FD), without the directory fd of the listing
 *   caps                      the CapInh/CapPrm/CapEff/CapBnd/CapAmb lines of
 *                             /proc/self/status
 *   id                        "uid=U euid=U gid=G egid=G groups=G1,G2" (numeric)
 *   http PORT [--ready-after SECONDS]
 *                             an HTTP/1.1 server on 0.0.0.0:PORT, one connection at a time:
 *                             GET / -> 200 "hello from testhelper\n"; GET /hostname;
 *                             GET /livez, GET /readyz -> 200 "ok\n" or 500 "fail\n";
 *                             POST /livez with body livez=FAIL|OK (and /readyz with
 *                             readyz=FAIL|OK) switches the answer; /readyz fails until
 *                             --ready-after SECONDS have passed (unless set by a POST).
 *                             One log line per request on stdout; SIGTERM/SIGINT exit 0.
 *   version                   print the version
 *
 * Built static (rootfs-tools/build-static-programs):
 *   gcc -static -O2 -Wall -Werror -o testhelper native/testhelper.c
 * No __DATE__/__TIME__ and no build paths in the binary: two builds are byte-identical.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TESTHELPER_VERSION "pyruntime-testhelper 1.0"
#define MIB (1024L * 1024L)

static const char *prog = "testhelper";

static void die(const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", prog, what, strerror(errno));
    exit(1);
}

static int usage(void)
{
    fprintf(stderr,
            "usage: %s MODE [ARGS]\n"
            "modes: true | sleep SECONDS|inf | memhog MIB | cpuhog [SECONDS]\n"
            "       forkbomb [--max N] [--hold SECONDS] | zombies N [SECONDS] | fds | caps | id\n"
            "       http PORT [--ready-after SECONDS] | version\n",
            prog);
    return 2;
}

static long parse_long(const char *s, const char *what, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "%s: %s must be an integer in [%ld, %ld], not '%s'\n", prog, what, min,
                max, s);
        exit(2);
    }
    return v;
}

static double parse_seconds(const char *s, const char *what)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < 0 || v != v) {
        fprintf(stderr, "%s: %s must be a number of seconds, not '%s'\n", prog, what, s);
        exit(2);
    }
    return v;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sleep `seconds` (< 0: forever), through signals that have handlers. */
static void sleep_for(double seconds)
{
    if (seconds < 0) {
        for (;;)
            pause();
    }
    double end = now() + seconds;
    for (;;) {
        double left = end - now();
        if (left <= 0)
            return;
        struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

/* ------------------------------------------------------------------------------ modes */
static int mode_sleep(int argc, char **argv)
{
    if (argc != 1)
        return usage();
    sleep_for(strcmp(argv[0], "inf") == 0 ? -1 : parse_seconds(argv[0], "sleep SECONDS"));
    return 0;
}

static int mode_memhog(int argc, char **argv)
{
    if (argc != 1)
        return usage();
    long total = parse_long(argv[0], "memhog MIB", 1, 1L << 20);
    long done = 0;
    printf("memhog: allocating %ld MiB\n", total);
    while (done < total) {
        char *chunk = malloc(MIB);
        if (!chunk) {
            printf("memhog: malloc failed after %ld MiB\n", done);
            return 1;
        }
        memset(chunk, 0xa5, MIB); /* touch every page: resident, charged to the cgroup */
        done++;
        if (done % 8 == 0 || done == total)
            printf("memhog: %ld MiB\n", done);
    }
    printf("memhog: holding %ld MiB\n", done);
    sleep_for(-1);
    return 0;
}

static int mode_cpuhog(int argc, char **argv)
{
    if (argc > 1)
        return usage();
    double seconds = argc ? parse_seconds(argv[0], "cpuhog SECONDS") : -1;
    double end = now() + seconds;
    volatile unsigned long spin = 0;
    printf("cpuhog: spinning\n");
    for (;;) {
        for (int i = 0; i < 1000000; i++)
            spin++;
        if (seconds >= 0 && now() >= end)
            return 0;
    }
}

static int mode_forkbomb(int argc, char **argv)
{
    long max = 512;
    double hold = -1;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--max") == 0 && i + 1 < argc)
            max = parse_long(argv[++i], "--max", 1, 1L << 20);
        else if (strcmp(argv[i], "--hold") == 0 && i + 1 < argc)
            hold = parse_seconds(argv[++i], "--hold");
        else
            return usage();
    }
    pid_t *kids = calloc((size_t)max, sizeof(pid_t));
    if (!kids)
        die("calloc");
    long n = 0;
    const char *why = NULL;
    while (n < max) {
        pid_t pid = fork();
        if (pid < 0) {
            why = strerror(errno);
            break;
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the bomb */
            for (;;)
                pause();
        }
        kids[n++] = pid;
    }
    if (why)
        printf("forkbomb: %ld children, fork failed: %s\n", n, why);
    else
        printf("forkbomb: %ld children, stopped at --max\n", n);
    sleep_for(hold);
    for (long i = 0; i < n; i++)
        kill(kids[i], SIGKILL);
    for (long i = 0; i < n; i++)
        waitpid(kids[i], NULL, 0);
    return 0;
}

static int mode_zombies(int argc, char **argv)
{
    if (argc < 1 || argc > 2)
        return usage();
    long n = parse_long(argv[0], "zombies N", 0, 10000);
    double hold = argc > 1 ? parse_seconds(argv[1], "zombies SECONDS") : -1;
    pid_t *kids = calloc((size_t)(n ? n : 1), sizeof(pid_t));
    if (!kids)
        die("calloc");
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0)
            die("fork");
        if (pid == 0)
            _exit(0);
        kids[i] = pid;
    }
    /* Wait until every child has exited, without reaping it (WNOWAIT). */
    for (long i = 0; i < n; i++) {
        siginfo_t info;
        memset(&info, 0, sizeof(info));
        while (waitid(P_PID, (id_t)kids[i], &info, WEXITED | WNOWAIT) < 0 && errno == EINTR)
            ;
    }
    printf("zombies:");
    for (long i = 0; i < n; i++)
        printf(" %d", (int)kids[i]);
    printf("\n");
    fflush(stdout);
    sleep_for(hold);
    return 0;
}

static int mode_fds(int argc, char **argv)
{
    (void)argv;
    if (argc)
        return usage();
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        die("opendir /proc/self/fd");
    int own = dirfd(d);
    int fds[1024];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 1024) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        int fd = atoi(e->d_name);
        if (fd != own)
            fds[n++] = fd;
    }
    /* readdir gives them in order already; sort anyway, the output is compared */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
            int t = fds[j];
            fds[j] = fds[j - 1];
            fds[j - 1] = t;
        }
    for (int i = 0; i < n; i++) {
        char path[64], target[PATH_MAX];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fds[i]);
        ssize_t len = readlink(path, target, sizeof(target) - 1);
        if (len < 0)
            snprintf(target, sizeof(target), "? (%s)", strerror(errno));
        else
            target[len] = '\0';
        printf("%d %s\n", fds[i], target);
    }
    closedir(d);
    return 0;
}

static int mode_caps(int argc, char **argv)
{
    (void)argv;
    if (argc)
        return usage();
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        die("open /proc/self/status");
    char line[512];
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "Cap", 3) == 0)
            fputs(line, stdout);
    fclose(f);
    return 0;
}

static int mode_id(int argc, char **argv)
{
    (void)argv;
    if (argc)
        return usage();
    gid_t groups[NGROUPS_MAX];
    int n = getgroups(NGROUPS_MAX, groups);
    if (n < 0)
        die("getgroups");
    printf("uid=%u euid=%u gid=%u egid=%u groups=", (unsigned)getuid(), (unsigned)geteuid(),
           (unsigned)getgid(), (unsigned)getegid());
    for (int i = 0; i < n; i++)
        printf("%s%u", i ? "," : "", (unsigned)groups[i]);
    printf("\n");
    return 0;
}

/* ------------------------------------------------------------------------------- http */
struct http_state {
    int live;           /* 1 ok, 0 fail */
    int ready_override; /* -1: decided by --ready-after; 1 ok; 0 fail */
    double ready_at;    /* monotonic time from which /readyz passes */
};

static void on_stop(int sig)
{
    (void)sig;
    _exit(0);
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static void respond(int fd, int status, const char *body)
{
    const char *reason = status == 200   ? "OK"
                         : status == 400 ? "Bad Request"
                         : status == 404 ? "Not Found"
                         : status == 405 ? "Method Not Allowed"
                         : status == 500 ? "Internal Server Error"
                                         : "Unknown";
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, reason, strlen(body));
    if (write_all(fd, head, (size_t)n) == 0)
        write_all(fd, body, strlen(body));
}

/* Read one request (head and a Content-Length body) into buf; returns its length or -1.
 * A client that says nothing for 5 s is dropped. */
static ssize_t read_request(int fd, char *buf, size_t size, char **body)
{
    size_t len = 0;
    char *end = NULL;
    size_t want = 0;
    for (;;) {
        if (end && len >= want)
            break;
        if (len + 1 >= size)
            return -1;
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, 5000);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        ssize_t got = read(fd, buf + len, size - 1 - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return end ? (ssize_t)len : -1;
        len += (size_t)got;
        buf[len] = '\0';
        if (!end && (end = strstr(buf, "\r\n\r\n")) != NULL) {
            size_t head_len = (size_t)(end - buf) + 4;
            size_t clen = 0;
            for (char *line = buf; line < end;) {
                char *eol = strstr(line, "\r\n"); /* found: the head ends in \r\n\r\n */
                if (strncasecmp(line, "Content-Length:", 15) == 0)
                    clen = (size_t)strtoul(line + 15, NULL, 10);
                line = eol + 2;
            }
            want = head_len + clen;
            if (want >= size)
                return -1;
            *body = buf + head_len;
        }
    }
    buf[len] = '\0';
    return (ssize_t)len;
}

static int set_switch(const char *body, const char *name, int *value)
{
    size_t n = strlen(name);
    if (strncmp(body, name, n) != 0 || body[n] != '=')
        return -1;
    const char *v = body + n + 1;
    size_t vlen = strcspn(v, "\r\n");
    if (vlen == 4 && strncasecmp(v, "FAIL", 4) == 0)
        *value = 0;
    else if (vlen == 2 && strncasecmp(v, "OK", 2) == 0)
        *value = 1;
    else
        return -1;
    return 0;
}

static void serve(int fd, struct http_state *st, const char *peer)
{
    char buf[8192];
    char *body = NULL;
    char method[16] = "", path[256] = "";
    int status;
    char answer[512];

    if (read_request(fd, buf, sizeof(buf), &body) < 0 || !body
        || sscanf(buf, "%15s %255s", method, path) != 2) {
        respond(fd, 400, "bad request\n");
        printf("http: %s - - 400\n", peer);
        return;
    }
    int is_get = strcmp(method, "GET") == 0, is_post = strcmp(method, "POST") == 0;
    int ready = st->ready_override >= 0 ? st->ready_override : now() >= st->ready_at;

    if (strcmp(path, "/") == 0 && is_get) {
        status = 200;
        snprintf(answer, sizeof(answer), "hello from testhelper\n");
    } else if (strcmp(path, "/hostname") == 0 && is_get) {
        char host[256] = "";
        gethostname(host, sizeof(host) - 1);
        status = 200;
        snprintf(answer, sizeof(answer), "%s\n", host);
    } else if ((strcmp(path, "/livez") == 0 || strcmp(path, "/readyz") == 0) && is_get) {
        int ok = path[1] == 'l' ? st->live : ready;
        status = ok ? 200 : 500;
        snprintf(answer, sizeof(answer), ok ? "ok\n" : "fail\n");
    } else if (strcmp(path, "/livez") == 0 && is_post) {
        int v;
        if (set_switch(body, "livez", &v) == 0) {
            st->live = v;
            status = 200;
            snprintf(answer, sizeof(answer), "livez=%s\n", v ? "OK" : "FAIL");
        } else {
            status = 400;
            snprintf(answer, sizeof(answer), "body must be livez=FAIL or livez=OK\n");
        }
    } else if (strcmp(path, "/readyz") == 0 && is_post) {
        int v;
        if (set_switch(body, "readyz", &v) == 0) {
            st->ready_override = v;
            status = 200;
            snprintf(answer, sizeof(answer), "readyz=%s\n", v ? "OK" : "FAIL");
        } else {
            status = 400;
            snprintf(answer, sizeof(answer), "body must be readyz=FAIL or readyz=OK\n");
        }
    } else if (strcmp(path, "/") == 0 || strcmp(path, "/hostname") == 0
               || strcmp(path, "/livez") == 0 || strcmp(path, "/readyz") == 0) {
        status = 405;
        snprintf(answer, sizeof(answer), "method not allowed\n");
    } else {
        status = 404;
        snprintf(answer, sizeof(answer), "not found\n");
    }
    respond(fd, status, answer);
    printf("http: %s %s %s %d\n", peer, method, path, status);
}

static int mode_http(int argc, char **argv)
{
    if (argc < 1)
        return usage();
    int port = (int)parse_long(argv[0], "http PORT", 1, 65535);
    double ready_after = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ready-after") == 0 && i + 1 < argc)
            ready_after = parse_seconds(argv[++i], "--ready-after");
        else
            return usage();
    }
    struct http_state st = {1, -1, now() + ready_after};

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ls < 0)
        die("socket");
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(ls, (struct sockaddr *)&addr, sizeof(addr)) < 0)
        die("bind");
    if (listen(ls, 64) < 0)
        die("listen");
    printf("http: listening on 0.0.0.0:%d\n", port);
    for (;;) {
        struct sockaddr_in peer;
        socklen_t plen = sizeof(peer);
        int fd = accept4(ls, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            die("accept");
        }
        char peer_s[64];
        char ip[INET_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof(ip));
        snprintf(peer_s, sizeof(peer_s), "%s:%u", ip, (unsigned)ntohs(peer.sin_port));
        serve(fd, &st, peer_s);
        shutdown(fd, SHUT_WR);
        close(fd);
    }
}

/* ------------------------------------------------------------------------------- main */
int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* a line is out before an OOM kill or a signal */
    if (argc < 2)
        return usage();
    const char *mode = argv[1];
    int n = argc - 2;
    char **args = argv + 2;

    if (strcmp(mode, "true") == 0)
        return n ? usage() : 0;
    if (strcmp(mode, "sleep") == 0)
        return mode_sleep(n, args);
    if (strcmp(mode, "memhog") == 0)
        return mode_memhog(n, args);
    if (strcmp(mode, "cpuhog") == 0)
        return mode_cpuhog(n, args);
    if (strcmp(mode, "forkbomb") == 0)
        return mode_forkbomb(n, args);
    if (strcmp(mode, "zombies") == 0)
        return mode_zombies(n, args);
    if (strcmp(mode, "fds") == 0)
        return mode_fds(n, args);
    if (strcmp(mode, "caps") == 0)
        return mode_caps(n, args);
    if (strcmp(mode, "id") == 0)
        return mode_id(n, args);
    if (strcmp(mode, "http") == 0)
        return mode_http(n, args);
    if (strcmp(mode, "version") == 0 || strcmp(mode, "-v") == 0) {
        printf("%s\n", TESTHELPER_VERSION);
        return 0;
    }
    fprintf(stderr, "%s: unknown mode '%s'\n", prog, mode);
    return usage();
}
