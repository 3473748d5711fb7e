/*
 * A reader for the JSON that pyruntime writes (state.json): find a member of an object,
 * walk an object or an array, read a string or an integer. Nothing is allocated; values
 * are pointers into the caller's buffer. Every function gives up (returns NULL or -1) on
 * anything it does not understand, and the caller then leaves the command to Python.
 */
#ifndef PYRUNTIME_JSON_READER_H
#define PYRUNTIME_JSON_READER_H

#include <stddef.h>

/* The value that the text from `text` to `end` consists of (whitespace around it
 * allowed), or NULL when it is not exactly one valid JSON value. */
const char *json_document(const char *text, const char *end);

/* Just past the value that starts at `value`, or NULL when it is not valid JSON. */
const char *json_skip_value(const char *value, const char *end);

/* The value of `key` in the object at `object`, or NULL when absent or malformed. */
const char *json_member(const char *object, const char *end, const char *key);

/*
 * Walking an object or an array: json_enter() on its '{' or '[', then json_next() until it
 * returns 0 (the end) or -1 (malformed). For an object `key` gets each member's key as a
 * string value (decode it with json_string) and `value` its value; for an array `key` is
 * set to NULL.
 */
struct json_walk {
    const char *at;
    const char *end;
    int is_object;
    int started;
};
int json_enter(struct json_walk *walk, const char *container, const char *end);
int json_next(struct json_walk *walk, const char **key, const char **value);

/* Decode the string at `value` into `out` (NUL-terminated). -1 when it is not a string,
 * holds a NUL, or does not fit. */
int json_string(const char *value, const char *end, char *out, size_t size);

/* The integer at `value`; -1 when it is not an integer that fits a long long. */
int json_integer(const char *value, const char *end, long long *out);

/* Whether `value` is absent (NULL) or the literal null: None to Python. */
int json_is_null(const char *value, const char *end);

/* Whether the value at `value` is null, false, 0, "", [] or {}: false to Python. */
int json_is_falsy(const char *value, const char *end);

/*
 * Call `each(value, end, context)` with every value of the array at `list` (none when
 * `list` is NULL or null). 0, or -1 when it is not an array, or as soon as `each` returns
 * non-zero.
 */
int json_each(const char *list, const char *end,
              int (*each)(const char *value, const char *end, void *context), void *context);

/*
 * Call `each(item, context)` with every string of the array at `list` (none when `list`
 * is NULL or null). 0, or -1 when it is not an array of strings shorter than `size` (at
 * most 8192), or as soon as `each` returns non-zero.
 */
int json_each_string(const char *list, const char *end, size_t size,
                     int (*each)(const char *item, void *context), void *context);

#endif
