/*
 * render.h: reports, services and errors as the two APIs show them.
 *
 * Privacy rules live here, in one place, so no handler can forget them:
 *   - contact details are never rendered (they are not even selected);
 *   - a sensitive report's description is shown to staff only;
 *   - which reports a viewer may see at all is decided by the queries
 *     (partners: their own; Open311 public: no sensitive categories).
 *
 * Open311 is rendered in JSON (jansson) and XML (a small escaping writer:
 * the spec's documents are flat, so no XML library is needed).
 */
#ifndef INTAKE_RENDER_H
#define INTAKE_RENDER_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "categories.h"
#include "directory.h"
#include "report.h"
#include "strbuf.h"

/* Appends <tag>escaped text</tag>, or <tag/> for NULL. */
void render_xml_elem(strbuf *b, const char *tag, const char *text);

/* True if the viewer may read the description of a report. */
bool render_description_visible(bool sensitive, const partner *viewer);

/* ISO 8601 in UTC with milliseconds into buf (>= 32 bytes). */
void render_time(int64_t us, char *buf, size_t len);

/* Native API: one report from a row of REPORT_COLUMNS starting at column
 * `col`, or a report just stored (the 201 body), appended as JSON text. */
void render_report_row(strbuf *b, const PGresult *res, int row, int col, const partner *viewer,
    directory *dir);
void render_report_new(strbuf *b, const report_in *r, int64_t srid, const partner *viewer,
    directory *dir);

/* Open311 service request, one row: as a JSON object or appended as XML
 * <request>...</request>. */
void render_open311_row_json(strbuf *b, const PGresult *res, int row, const partner *viewer,
    directory *dir);
void render_open311_row_xml(strbuf *b, const PGresult *res, int row, const partner *viewer,
    directory *dir);

/* Open311 service list and service definition. */
json_t *render_services_json(const category_set *cats);
void render_services_xml(strbuf *b, const category_set *cats);
json_t *render_definition_json(const category *c);
void render_definition_xml(strbuf *b, const category *c);

/* Open311 error document: [{"code":N,"description":...}] or
 * <errors><error><code/><description/></error></errors>. */
char *render_open311_error(bool xml, unsigned code, const char *description, size_t *len);

#endif
