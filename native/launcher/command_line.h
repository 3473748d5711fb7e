/*
 * Reading runc-style flags as the Python CLI (pyruntime.cli.args) reads them: any number
 * of leading dashes, a value after '=' or as the next argument. Shared by main.c's global
 * flags and the native commands' own.
 */
#ifndef PYRUNTIME_COMMAND_LINE_H
#define PYRUNTIME_COMMAND_LINE_H

#include <stddef.h>

/* The flag's name without its leading dashes; `length` stops before any '='. */
const char *flag_name(const char *arg, size_t *length);

/* Whether the name `flag_name` gave is `flag` (without dashes). */
int is_flag(const char *name, size_t length, const char *flag);

#endif
