/*
 * Starting a new container's init next to the runtime's interpreter (early_init.c).
 */
#ifndef PYRUNTIME_EARLY_INIT_H
#define PYRUNTIME_EARLY_INIT_H

/* For `create` or `run` (`is_run`) with its arguments from argv[first]: start the
 * container's init now when the command line and the bundle's config allow it, and say
 * so to the Python runtime in PYRUNTIME_EARLY_INIT. Otherwise, or when anything fails,
 * do nothing: the runtime then starts init itself. */
void start_early_init(int argc, char **argv, int first, int is_run);

#endif
