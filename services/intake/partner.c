/*
 * partner.c: partner permissions (see partner.h).
 */
#include "partner.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

bool
partner_may_report(const partner *p, const char *code)
{
	if (p->all_categories)
		return true;
	for (size_t i = 0; i < p->nallowed; i++) {
		if (strcmp(p->allowed[i], code) == 0)
			return true;
	}
	return false;
}

void
partner_set_allowed(partner *p, const char *csv)
{
	for (size_t i = 0; i < p->nallowed; i++)
		free(p->allowed[i]);
	free(p->allowed);
	p->allowed = NULL;
	p->nallowed = 0;
	p->all_categories = csv == NULL;
	if (csv == NULL)
		return;
	const char *s = csv;
	while (*s) {
		const char *comma = strchr(s, ',');
		size_t n = comma ? (size_t)(comma - s) : strlen(s);
		if (n > 0) {
			p->allowed = xrealloc(p->allowed, (p->nallowed + 1) * sizeof(char *));
			p->allowed[p->nallowed++] = xstrndup(s, n);
		}
		s += n;
		if (*s == ',')
			s++;
	}
}

void
partner_fini(partner *p)
{
	if (p == NULL)
		return;
	partner_set_allowed(p, "");
	free(p->name);
	free(p->role);
}
