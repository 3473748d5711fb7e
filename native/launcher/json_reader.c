/*
 * The JSON reader of json_reader.h: a recursive skip over values (strings, numbers,
 * literals, objects, arrays, nested up to MAX_DEPTH) and the few decoders the native
 * commands need.
 */
#include "json_reader.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* state.json nests a few levels (the config's seccomp rules the deepest); far more
 * than that is not ours and is left to Python. */
#define MAX_DEPTH 64

static const char *skip_space(const char *at, const char *end)
{
    while (at < end && (*at == ' ' || *at == '\t' || *at == '\n' || *at == '\r'))
        at++;
    return at;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The four hex digits at `at` as a number, or -1. */
static long hex4(const char *at, const char *end)
{
    if (end - at < 4)
        return -1;
    long value = 0;
    for (int i = 0; i < 4; i++) {
        int digit = hex_digit(at[i]);
        if (digit < 0)
            return -1;
        value = value * 16 + digit;
    }
    return value;
}

static const char *skip_string(const char *at, const char *end)
{
    for (at++; at < end; at++) {
        if (*at == '"')
            return at + 1;
        if ((unsigned char)*at < 0x20)
            return NULL;
        if (*at == '\\') {
            if (++at >= end)
                return NULL;
            if (*at == 'u') {
                if (hex4(at + 1, end) < 0)
                    return NULL;
                at += 4;
            } else if (!strchr("\"\\/bfnrt", *at)) {
                return NULL;
            }
        }
    }
    return NULL;
}

static const char *skip_digits(const char *at, const char *end)
{
    const char *start = at;
    while (at < end && *at >= '0' && *at <= '9')
        at++;
    return at > start ? at : NULL;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static const char *skip_number(const char *at, const char *end)
{
    if (at < end && *at == '-')
        at++;
    if (at < end && *at == '0')
        at++;
    else if (!(at = skip_digits(at, end)))
        return NULL;
    if (at < end && *at == '.' && !(at = skip_digits(at + 1, end)))
        return NULL;
    if (at < end && (*at == 'e' || *at == 'E')) {
        at++;
        if (at < end && (*at == '+' || *at == '-'))
            at++;
        if (!(at = skip_digits(at, end)))
            return NULL;
    }
    return at;
}

static const char *skip_literal(const char *at, const char *end, const char *word)
{
    size_t length = strlen(word);
    return (size_t)(end - at) >= length && memcmp(at, word, length) == 0 ? at + length : NULL;
}

static const char *skip_value_at_depth(const char *at, const char *end, int depth);

static const char *skip_container(const char *at, const char *end, int depth)
{
    char close = *at == '{' ? '}' : ']';
    int is_object = *at == '{';
    at = skip_space(at + 1, end);
    if (at < end && *at == close)
        return at + 1;
    while (at < end) {
        if (is_object) {
            if (*at != '"' || !(at = skip_string(at, end)))
                return NULL;
            at = skip_space(at, end);
            if (at >= end || *at != ':')
                return NULL;
            at = skip_space(at + 1, end);
        }
        if (!(at = skip_value_at_depth(at, end, depth + 1)))
            return NULL;
        at = skip_space(at, end);
        if (at < end && *at == close)
            return at + 1;
        if (at >= end || *at != ',')
            return NULL;
        at = skip_space(at + 1, end);
    }
    return NULL;
}

static const char *skip_value_at_depth(const char *at, const char *end, int depth)
{
    if (depth > MAX_DEPTH || at >= end)
        return NULL;
    switch (*at) {
    case '"':
        return skip_string(at, end);
    case '{':
    case '[':
        return skip_container(at, end, depth);
    case 't':
        return skip_literal(at, end, "true");
    case 'f':
        return skip_literal(at, end, "false");
    case 'n':
        return skip_literal(at, end, "null");
    default:
        return skip_number(at, end);
    }
}

const char *json_skip_value(const char *value, const char *end)
{
    return value ? skip_value_at_depth(value, end, 0) : NULL;
}

const char *json_document(const char *text, const char *end)
{
    const char *value = skip_space(text, end);
    const char *after = json_skip_value(value, end);
    return after && skip_space(after, end) == end ? value : NULL;
}

int json_enter(struct json_walk *walk, const char *container, const char *end)
{
    if (!container || container >= end || (*container != '{' && *container != '['))
        return -1;
    walk->at = container + 1;
    walk->end = end;
    walk->is_object = *container == '{';
    walk->started = 0;
    return 0;
}

int json_next(struct json_walk *walk, const char **key, const char **value)
{
    const char *end = walk->end;
    const char *at = skip_space(walk->at, end);
    char close = walk->is_object ? '}' : ']';
    if (at >= end)
        return -1;
    if (*at == close) {
        walk->at = at + 1;
        return 0;
    }
    if (walk->started) {
        if (*at != ',')
            return -1;
        at = skip_space(at + 1, end);
    }
    *key = NULL;
    if (walk->is_object) {
        if (at >= end || *at != '"')
            return -1;
        *key = at;
        if (!(at = skip_string(at, end)))
            return -1;
        at = skip_space(at, end);
        if (at >= end || *at != ':')
            return -1;
        at = skip_space(at + 1, end);
    }
    *value = at;
    if (!(at = json_skip_value(at, end)))
        return -1;
    walk->at = at;
    walk->started = 1;
    return 1;
}

const char *json_member(const char *object, const char *end, const char *key)
{
    struct json_walk walk;
    if (!object || *object != '{' || json_enter(&walk, object, end) != 0)
        return NULL;
    const char *name;
    const char *value;
    char decoded[256];
    while (json_next(&walk, &name, &value) == 1) {
        if (json_string(name, end, decoded, sizeof decoded) == 0 && strcmp(decoded, key) == 0)
            return value;
    }
    return NULL;
}

/* Append the code point as UTF-8; -1 when it does not fit. */
static int put_utf8(unsigned long code, char **out, const char *limit)
{
    unsigned char bytes[4];
    int count;
    if (code < 0x80) {
        bytes[0] = (unsigned char)code;
        count = 1;
    } else if (code < 0x800) {
        bytes[0] = (unsigned char)(0xC0 | (code >> 6));
        bytes[1] = (unsigned char)(0x80 | (code & 0x3F));
        count = 2;
    } else if (code < 0x10000) {
        bytes[0] = (unsigned char)(0xE0 | (code >> 12));
        bytes[1] = (unsigned char)(0x80 | ((code >> 6) & 0x3F));
        bytes[2] = (unsigned char)(0x80 | (code & 0x3F));
        count = 3;
    } else {
        bytes[0] = (unsigned char)(0xF0 | (code >> 18));
        bytes[1] = (unsigned char)(0x80 | ((code >> 12) & 0x3F));
        bytes[2] = (unsigned char)(0x80 | ((code >> 6) & 0x3F));
        bytes[3] = (unsigned char)(0x80 | (code & 0x3F));
        count = 4;
    }
    if (limit - *out < count)
        return -1;
    memcpy(*out, bytes, (size_t)count);
    *out += count;
    return 0;
}

int json_string(const char *value, const char *end, char *out, size_t size)
{
    if (!value || value >= end || *value != '"' || size == 0)
        return -1;
    const char *limit = out + size - 1;  /* room for the NUL */
    for (const char *at = value + 1; at < end; at++) {
        unsigned long code;
        if (*at == '"') {
            *out = '\0';
            return 0;
        }
        if ((unsigned char)*at < 0x20)
            return -1;
        if (*at != '\\') {
            if (out >= limit)
                return -1;
            *out++ = *at;
            continue;
        }
        if (++at >= end)
            return -1;
        switch (*at) {
        case '"': case '\\': case '/':
            code = (unsigned char)*at;
            break;
        case 'b': code = '\b'; break;
        case 'f': code = '\f'; break;
        case 'n': code = '\n'; break;
        case 'r': code = '\r'; break;
        case 't': code = '\t'; break;
        case 'u': {
            long high = hex4(at + 1, end);
            if (high < 0)
                return -1;
            at += 4;
            code = (unsigned long)high;
            if (high >= 0xD800 && high <= 0xDBFF) {
                /* A surrogate pair: the low half must follow as another \u escape. */
                long low = end - at > 6 && at[1] == '\\' && at[2] == 'u' ? hex4(at + 3, end) : -1;
                if (low < 0xDC00 || low > 0xDFFF)
                    return -1;
                at += 6;
                code = 0x10000 + (((unsigned long)high - 0xD800) << 10) +
                       ((unsigned long)low - 0xDC00);
            } else if (high >= 0xDC00 && high <= 0xDFFF) {
                return -1;
            }
            break;
        }
        default:
            return -1;
        }
        if (code == 0 || put_utf8(code, &out, limit) != 0)
            return -1;
    }
    return -1;
}

int json_integer(const char *value, const char *end, long long *out)
{
    const char *after = json_skip_value(value, end);
    if (!after || (*value != '-' && (*value < '0' || *value > '9')))
        return -1;
    char digits[32];
    size_t length = (size_t)(after - value);
    if (length >= sizeof digits)
        return -1;
    memcpy(digits, value, length);
    digits[length] = '\0';
    char *stop;
    errno = 0;
    long long number = strtoll(digits, &stop, 10);
    if (errno != 0 || *stop != '\0')
        return -1;  /* a fraction, an exponent, or out of range */
    *out = number;
    return 0;
}

int json_is_falsy(const char *value, const char *end)
{
    const char *after = json_skip_value(value, end);
    if (!after)
        return 0;
    size_t length = (size_t)(after - value);
    if ((length == 4 && memcmp(value, "null", 4) == 0) ||
        (length == 5 && memcmp(value, "false", 5) == 0) ||
        (length == 1 && *value == '0') || (length == 2 && memcmp(value, "\"\"", 2) == 0))
        return 1;
    if (*value == '{' || *value == '[')
        return skip_space(value + 1, end) == after - 1;
    return 0;
}

int json_is_null(const char *value, const char *end)
{
    return !value || (end - value >= 4 && strncmp(value, "null", 4) == 0);
}

int json_each(const char *list, const char *end,
              int (*each)(const char *value, const char *end, void *context), void *context)
{
    if (json_is_null(list, end))
        return 0;
    struct json_walk walk;
    const char *key;
    const char *value;
    int more;
    if (*list != '[' || json_enter(&walk, list, end) != 0)
        return -1;
    while ((more = json_next(&walk, &key, &value)) == 1)
        if (each(value, end, context) != 0)
            return -1;
    return more;
}

struct string_visit {
    size_t size;
    int (*each)(const char *item, void *context);
    void *context;
};

static int visit_string(const char *value, const char *end, void *data)
{
    const struct string_visit *visit = data;
    char item[8192];
    return json_string(value, end, item, visit->size) != 0 ? -1
                                                           : visit->each(item, visit->context);
}

int json_each_string(const char *list, const char *end, size_t size,
                     int (*each)(const char *item, void *context), void *context)
{
    struct string_visit visit = {size, each, context};
    return size > 8192 ? -1 : json_each(list, end, visit_string, &visit);
}
