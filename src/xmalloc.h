/*
 * xmalloc: allocators that abort on exhaustion.
 *
 * Out of memory is not a runtime condition holdfast recovers from: every
 * promise made to a client is already on disk (STYLE.md rule 1), so dying
 * loses nothing.  Callers own what these return and release it with free().
 */
#ifndef HOLDFAST_XMALLOC_H
#define HOLDFAST_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xreallocarray(void *ptr, size_t nmemb, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
int xasprintf(char **ret, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
