/*
 * pause: the first process of a pod sandbox, like Kubernetes' pause.
 *
 * It holds the sandbox's namespaces open by doing nothing: it blocks in pause() forever.
 * SIGINT and SIGTERM make it exit 0. As PID 1 of a PID namespace it is the reaper of
 * every orphan there: a SIGCHLD handler reaps all exited children (waitpid(-1, WNOHANG)
 * in a loop), so processes of other containers of the pod that die after their parent
 * never pile up as zombies. `pause -v` prints the version.
 *
 * Built static (rootfs-tools/build-static-programs):
 *   gcc -static -O2 -Wall -Werror -o pause native/pause.c
 * No __DATE__/__TIME__ and no build paths in the binary: two builds are byte-identical.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAUSE_VERSION "pyruntime-pause 1.0"

static void on_stop(int sig)
{
    (void)sig;
    _exit(0);
}

static void reap_all(void)
{
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    errno = saved;
}

static void on_child(int sig)
{
    (void)sig;
    reap_all();
}

static int handle(int sig, void (*fn)(int), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = fn;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) < 0) {
        fprintf(stderr, "pause: sigaction(%d): %s\n", sig, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        if (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0) {
            printf("%s\n", PAUSE_VERSION);
            return 0;
        }
        fprintf(stderr, "usage: pause [-v]\n");
        return 2;
    }
    if (getpid() != 1)
        fprintf(stderr, "pause: warning: not PID 1, orphans of this namespace are not mine\n");

    if (handle(SIGINT, on_stop, 0) < 0 || handle(SIGTERM, on_stop, 0) < 0
        || handle(SIGCHLD, on_child, SA_NOCLDSTOP | SA_RESTART) < 0)
        return 1;
    reap_all(); /* children that were already gone before the handler was in place */

    for (;;)
        pause();
    /* not reached */
    return 42;
}
