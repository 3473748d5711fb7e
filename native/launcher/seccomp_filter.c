/*
 * seccomp_filter.h: pyruntime.linux.seccomp's _build, call for call (the same libseccomp
 * calls in the same order give the same filter). A change there must be made here too,
 * or must make seccomp_filter_build return -1.
 */
#define _GNU_SOURCE
#include "seccomp_filter.h"

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "json_reader.h"

#define MAX_CONDITIONS 6  /* a syscall has at most six arguments */
#define EPERM_RETURN 1    /* the errno of ERRNO and TRACE when the profile gives none */
#define NR_SCMP_ERROR (-1)

/* The libseccomp functions used, found with dlsym. */
static struct {
    scmp_filter_ctx (*init)(uint32_t);
    void (*release)(scmp_filter_ctx);
    uint32_t (*arch_resolve_name)(const char *);
    int (*arch_add)(scmp_filter_ctx, uint32_t);
    int (*syscall_resolve_name)(const char *);
    int (*rule_add_array)(scmp_filter_ctx, uint32_t, int, unsigned int,
                          const struct scmp_arg_cmp *);
    int (*attr_set)(scmp_filter_ctx, enum scmp_filter_attr, uint32_t);
    int (*load)(const scmp_filter_ctx);
} seccomp;

static const struct {
    const char *name;
    uint32_t value;
} PLAIN_ACTIONS[] = {
    {"SCMP_ACT_KILL", 0x00000000},        {"SCMP_ACT_KILL_THREAD", 0x00000000},
    {"SCMP_ACT_KILL_PROCESS", 0x80000000}, {"SCMP_ACT_TRAP", 0x00030000},
    {"SCMP_ACT_LOG", 0x7FFC0000},          {"SCMP_ACT_ALLOW", 0x7FFF0000},
};

static const char *const OPERATORS[] = {
    NULL, "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
    "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ",
};

/* enum scmp_filter_attr values, as Python gives them (WAITKILL is libseccomp 2.6's 10). */
static const struct {
    const char *flag;
    int attribute;
} FLAG_ATTRIBUTES[] = {
    {"SECCOMP_FILTER_FLAG_TSYNC", 4},
    {"SECCOMP_FILTER_FLAG_LOG", 6},
    {"SECCOMP_FILTER_FLAG_SPEC_ALLOW", 7},
    {"SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", 10},
};
#define ATTRIBUTE_CTL_NNP 3
#define ATTRIBUTE_CTL_OPTIMIZE 8

static int open_library(struct seccomp_filter *filter)
{
    filter->library = dlopen("libseccomp.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!filter->library)
        return -1;
#define FIND(field, symbol) \
    if (!(*(void **)&seccomp.field = dlsym(filter->library, symbol))) return -1
    FIND(init, "seccomp_init");
    FIND(release, "seccomp_release");
    FIND(arch_resolve_name, "seccomp_arch_resolve_name");
    FIND(arch_add, "seccomp_arch_add");
    FIND(syscall_resolve_name, "seccomp_syscall_resolve_name");
    FIND(rule_add_array, "seccomp_rule_add_array");
    FIND(attr_set, "seccomp_attr_set");
    FIND(load, "seccomp_load");
#undef FIND
    return 0;
}

/* The member `name` of `object` as a string into `out`; "" when absent or null. */
static int optional_string(const char *object, const char *end, const char *name, char *out,
                           size_t size)
{
    const char *value = json_member(object, end, name);
    out[0] = '\0';
    if (json_is_null(value, end))
        return 0;
    return json_string(value, end, out, size);
}

/* An optional non-negative integer member; `otherwise` when absent or null. */
static int optional_integer(const char *object, const char *end, const char *name,
                            long long otherwise, long long *out)
{
    const char *value = json_member(object, end, name);
    *out = otherwise;
    if (json_is_null(value, end))
        return 0;
    return json_integer(value, end, out) == 0 && *out >= 0 ? 0 : -1;
}

/* Python's action_value: -1 for SCMP_ACT_NOTIFY or an unknown name. */
static int action_value(const char *object, const char *end, const char *action_member,
                        const char *errno_member, uint32_t *value)
{
    char action[64];
    long long errno_return;
    if (optional_string(object, end, action_member, action, sizeof action) != 0 ||
        optional_integer(object, end, errno_member, EPERM_RETURN, &errno_return) != 0)
        return -1;
    for (size_t i = 0; i < sizeof PLAIN_ACTIONS / sizeof PLAIN_ACTIONS[0]; i++) {
        if (strcmp(PLAIN_ACTIONS[i].name, action) == 0) {
            *value = PLAIN_ACTIONS[i].value;
            return 0;
        }
    }
    if (strcmp(action, "SCMP_ACT_ERRNO") == 0)
        *value = 0x00050000 | ((uint32_t)errno_return & 0xFFFF);
    else if (strcmp(action, "SCMP_ACT_TRACE") == 0)
        *value = 0x7FF00000 | ((uint32_t)errno_return & 0xFFFF);
    else
        return -1;
    return 0;
}

static int add_architecture(const char *name, void *context)
{
    /* The spec writes SCMP_ARCH_X86_64; libseccomp's names are the same in lower case. */
    char word[64];
    snprintf(word, sizeof word, "%s", strncmp(name, "SCMP_ARCH_", 10) == 0 ? name + 10 : name);
    for (char *c = word; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    uint32_t token = seccomp.arch_resolve_name(word);
    if (token == 0)
        return -1;
    int rc = seccomp.arch_add(context, token);
    return rc != -EEXIST && rc < 0 ? -1 : 0;
}

static int set_flag(const char *flag, void *context)
{
    for (size_t i = 0; i < sizeof FLAG_ATTRIBUTES / sizeof FLAG_ATTRIBUTES[0]; i++)
        if (strcmp(FLAG_ATTRIBUTES[i].flag, flag) == 0)
            return seccomp.attr_set(context, (enum scmp_filter_attr)FLAG_ATTRIBUTES[i].attribute,
                                    1) < 0 ? -1 : 0;
    return -1;
}

/* Python's _conditions: -1 for anything it would refuse, or a value beyond a long long. */
struct conditions {
    struct scmp_arg_cmp items[MAX_CONDITIONS];
    unsigned int count;
};

static int add_condition(const char *item, const char *end, void *data)
{
    struct conditions *conditions = data;
    long long index, value, value_two;
    char op[32];
    int operator = 0;
    if (conditions->count == MAX_CONDITIONS || *item != '{' ||
        optional_integer(item, end, "index", 0, &index) != 0 || index >= MAX_CONDITIONS ||
        optional_string(item, end, "op", op, sizeof op) != 0 ||
        optional_integer(item, end, "value", 0, &value) != 0 ||
        optional_integer(item, end, "valueTwo", 0, &value_two) != 0)
        return -1;
    for (int i = 1; i < (int)(sizeof OPERATORS / sizeof OPERATORS[0]); i++)
        if (strcmp(OPERATORS[i], op) == 0)
            operator = i;
    if (!operator)
        return -1;
    conditions->items[conditions->count++] = (struct scmp_arg_cmp){
        .arg = (unsigned int)index, .op = (enum scmp_compare)operator,
        .datum_a = (uint64_t)value, .datum_b = (uint64_t)value_two,
    };
    return 0;
}

/* One rule of `syscalls`, for each of its names libseccomp knows. */
struct rule {
    scmp_filter_ctx context;
    uint32_t action;
    uint32_t default_action;
    struct conditions conditions;
    int split;
};

static int add_rule_for(const char *name, void *data)
{
    const struct rule *rule = data;
    const struct conditions *conditions = &rule->conditions;
    int number = seccomp.syscall_resolve_name(name);
    if (number == NR_SCMP_ERROR)
        return 0;  /* unknown to this libseccomp: skipped, as runc does */
    if (!rule->split)
        return seccomp.rule_add_array(rule->context, rule->action, number, conditions->count,
                                      conditions->count ? conditions->items : NULL) < 0 ? -1
                                                                                       : 0;
    for (unsigned int i = 0; i < conditions->count; i++)
        if (seccomp.rule_add_array(rule->context, rule->action, number, 1,
                                   &conditions->items[i]) < 0)
            return -1;
    return 0;
}

static int add_rule(const char *object, const char *end, void *data)
{
    struct rule rule = *(const struct rule *)data;  /* the filter's context and default */
    if (*object != '{' || action_value(object, end, "action", "errnoRet", &rule.action) != 0 ||
        json_each(json_member(object, end, "args"), end, add_condition, &rule.conditions) != 0)
        return -1;
    if (rule.action == rule.default_action)
        return 0;  /* libseccomp refuses it (EACCES); it changes nothing anyway */
    /* libseccomp refuses two conditions on one argument in one rule: one rule each. */
    for (unsigned int i = 0; i < rule.conditions.count; i++)
        for (unsigned int j = i + 1; j < rule.conditions.count; j++)
            rule.split |= rule.conditions.items[i].arg == rule.conditions.items[j].arg;
    return json_each_string(json_member(object, end, "names"), end, 64, add_rule_for, &rule);
}

static int count_value(const char *value, const char *end, void *count)
{
    (void)value;
    (void)end;
    ++*(int *)count;
    return 0;
}

static int add_rules(const char *profile, const char *end, uint32_t default_action,
                     scmp_filter_ctx context)
{
    const char *list = json_member(profile, end, "syscalls");
    int rules = 0;
    if (json_each(list, end, count_value, &rules) != 0)
        return -1;
    /* A binary tree beats a linear list for long profiles (runc's threshold). */
    if (rules > 32)
        seccomp.attr_set(context, (enum scmp_filter_attr)ATTRIBUTE_CTL_OPTIMIZE, 2);
    struct rule rule = {.context = context, .default_action = default_action};
    return json_each(list, end, add_rule, &rule);
}

int seccomp_filter_build(const char *profile, const char *end, struct seccomp_filter *filter)
{
    filter->library = filter->context = NULL;
    char listener[8];
    uint32_t default_action;
    if (*profile != '{' ||
        optional_string(profile, end, "listenerPath", listener, sizeof listener) != 0 ||
        listener[0] != '\0' ||
        action_value(profile, end, "defaultAction", "defaultErrnoRet", &default_action) != 0 ||
        open_library(filter) != 0)
        goto fail;
    filter->context = seccomp.init(default_action);
    if (!filter->context ||
        seccomp.attr_set(filter->context, (enum scmp_filter_attr)ATTRIBUTE_CTL_NNP, 0) < 0 ||
        json_each_string(json_member(profile, end, "architectures"), end, 64,
                         add_architecture, filter->context) != 0 ||
        json_each_string(json_member(profile, end, "flags"), end, 64, set_flag,
                         filter->context) != 0 ||
        add_rules(profile, end, default_action, filter->context) != 0)
        goto fail;
    return 0;
fail:
    seccomp_filter_release(filter);
    return -1;
}

int seccomp_filter_load(const struct seccomp_filter *filter)
{
    return seccomp.load(filter->context);
}

void seccomp_filter_release(struct seccomp_filter *filter)
{
    if (filter->context)
        seccomp.release(filter->context);
    if (filter->library)
        dlclose(filter->library);
    filter->library = filter->context = NULL;
}
