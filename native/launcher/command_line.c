/* command_line.h */
#include "command_line.h"

#include <string.h>

const char *flag_name(const char *arg, size_t *length)
{
    while (*arg == '-')
        arg++;
    const char *equals = strchr(arg, '=');
    *length = equals ? (size_t)(equals - arg) : strlen(arg);
    return arg;
}

int is_flag(const char *name, size_t length, const char *flag)
{
    return strlen(flag) == length && strncmp(name, flag, length) == 0;
}
