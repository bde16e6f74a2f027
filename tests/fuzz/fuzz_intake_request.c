/*
 * fuzz_intake_request.c: libFuzzer target for intake's whole request path
 * short of the network: Open311 form bodies (form.c) and native JSON
 * bodies (json.c), each run through the full report validation (report.c,
 * categories.c, places.c) as a partner allowed every category, and then
 * rendered as the client would see it (render.c): the error document in
 * Open311 JSON and XML (built as request.c's intake_error builds it), or the
 * accepted report's texts as XML elements and JSON strings.
 *
 * The first input byte picks the front end (even: form, odd: JSON); the
 * rest is the body. Whatever the bytes, the answer must be either a
 * validated report whose texts are valid UTF-8 within their limits and
 * carry only characters XML can, or an error with a code, a 4xx status and
 * a field name whose texts are valid UTF-8; every rendered document must
 * be valid UTF-8 (and the JSON one must parse); nothing may crash or leak.
 * (Issue 9: a name cut inside a character by "%.100s" made jansson return
 * NULL for the error text, and the error renderer crashed. This target
 * used to stop before rendering and did not see it.)
 *
 * fuzz-sources: services/intake/form.c services/intake/report.c services/intake/categories.c services/intake/places.c services/intake/partner.c services/intake/auth.c services/intake/ratelimit.c services/intake/render.c services/intake/query.c services/common/json.c services/common/util.c services/common/log.c services/common/strbuf.c services/common/crypto.c
 *
 * Built with -DTRYGG_FUZZ_SEEDS instead, it writes a few valid and
 * invalid bodies into the directory named by argv[1].
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "intake/directory.h"
#include "intake/render.h"
#include "intake/report.h"

static category_set cats;
static place_set places;
static partner everyone;
static const double box[4] = {59.326, 18.020, 59.357, 18.085};

static void
init_once(void)
{
	static int done;
	char err[200];
	if (done)
		return;
	done = 1;
	if (categories_add(&cats, "litter", "Litter", "", "physical_environment", "", 2, 1440,
	        false, "[]", err, sizeof(err)) != 0 ||
	    categories_add(&cats, "graffiti", "Graffiti", "", "physical_environment", "", 2, 1440,
	        false,
	        "[{\"code\":\"surface\",\"datatype\":\"singlevaluelist\",\"required\":true,"
	        "\"values\":[{\"key\":\"wall\",\"name\":\"Wall\"}]},"
	        "{\"code\":\"n\",\"datatype\":\"number\"},{\"code\":\"when\",\"datatype\":"
	        "\"datetime\"},"
	        "{\"code\":\"tags\",\"datatype\":\"multivaluelist\",\"values\":[{\"key\":\"a\"}]}]",
	        err, sizeof(err)) != 0 ||
	    places_add(&places, 1, "norrmalm", "Norrmalm", true,
	        "{\"type\":\"Polygon\",\"coordinates\":[[[18.02,59.326],[18.085,59.326],"
	        "[18.085,59.357],[18.02,59.357]],[[18.05,59.34],[18.051,59.34],[18.051,59.341]]]}",
	        err, sizeof(err)) != 0 ||
	    places_add(&places, 2, "torg", "Torg", false,
	        "{\"type\":\"MultiPolygon\",\"coordinates\":[[[[18.06,59.33],[18.07,59.33],"
	        "[18.07,59.34]]],[[[18.03,59.33],[18.04,59.33],[18.04,59.34]]]]}",
	        err, sizeof(err)) != 0)
		abort();
	everyone = (partner){.id = 1, .name = "p", .role = "staff", .staff = true};
	partner_set_allowed(&everyone, NULL);
}

/* render.c reads categories and places through the directory; the target
 * links no database, so these stand in for directory.c. */
const category_set *
directory_categories(const directory *dir)
{
	(void)dir;
	return &cats;
}

const place_set *
directory_places(const directory *dir)
{
	(void)dir;
	return &places;
}

partner *
directory_partner(directory *dir, int id)
{
	(void)dir;
	(void)id;
	return &everyone;
}

/* Valid UTF-8 with only characters XML 1.0 can carry. */
static void
check_xml_text(const char *s)
{
	size_t n = strlen(s);
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t len = trygg_utf8_decode(s + i, n - i, &cp);
		if (len == 0 || !trygg_xml_char(cp))
			abort();
		i += len;
	}
}

/* The error as both Open311 formats render it (request.c's intake_error). */
static void
render_error(const tjson_error *e)
{
	char text[512];
	if (e->field[0])
		snprintf(text, sizeof(text), "%s: %s", e->field, e->message);
	else
		snprintf(text, sizeof(text), "%s", e->message);
	for (int xml = 0; xml < 2; xml++) {
		size_t len;
		char *doc = render_open311_error(xml, (unsigned)e->status, text, &len);
		if (doc == NULL || strlen(doc) != len || !trygg_utf8_valid(doc, len))
			abort();
		if (xml) {
			check_xml_text(doc);
		} else {
			json_error_t je;
			json_t *v = json_loadb(doc, len, 0, &je);
			if (!json_is_array(v))
				abort();
			json_decref(v);
		}
		free(doc);
	}
}

/* An accepted report's texts, as the feed would write them. */
static void
render_ok(const report_in *r)
{
	const char *texts[] = {r->address, r->description, r->media_url, r->category};
	strbuf b = {0};
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		if (texts[i] == NULL)
			continue;
		check_xml_text(texts[i]);
		render_xml_elem(&b, "t", texts[i]);
		strbuf_append_json(&b, texts[i]);
	}
	strbuf body = {0};
	render_report_new(&body, r, 1, &everyone, NULL);
	json_t *o = json_loadb(body.s, body.len, 0, NULL); /* the 201 body is JSON */
	if (o == NULL || (b.s != NULL && !trygg_utf8_valid(b.s, b.len)))
		abort();
	json_decref(o);
	strbuf_fini(&body);
	strbuf_fini(&b);
}

static void
check_ok(const report_in *r)
{
	if (r->description &&
	    (!trygg_utf8_valid(r->description, strlen(r->description)) ||
	        strlen(r->description) > 4 * REPORT_DESCRIPTION_MAX))
		abort();
	if (r->media_url && !intake_media_url_ok(r->media_url))
		abort();
	if (r->nplaces > PLACES_MATCH_MAX || r->category == NULL || r->attributes == NULL)
		abort();
}

static void
check_err(const tjson_error *e)
{
	if (e->code == NULL || e->status < 400 || e->status > 499 ||
	    !trygg_utf8_valid(e->message, strlen(e->message)) ||
	    !trygg_utf8_valid(e->field, strlen(e->field)))
		abort();
	render_error(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	init_once();
	if (size == 0)
		return 0;
	const char *body = (const char *)data + 1;
	size_t len = size - 1;
	report_ctx ctx = {.categories = &cats,
	    .places = &places,
	    .district_box = box,
	    .partner = &everyone};
	report_in r;
	tjson_error e;
	if ((data[0] & 1) == 0) {
		form f;
		if (form_parse(body, len, &f, &e) != 0) {
			check_err(&e);
			return 0;
		}
		for (size_t i = 0; i < f.n; i++) {
			if (!trygg_utf8_valid(f.fields[i].name, strlen(f.fields[i].name)))
				abort();
		}
		if (intake_report_from_form(&f, &ctx, &r, &e) == 0) {
			check_ok(&r);
			render_ok(&r);
			report_in_fini(&r);
		} else {
			check_err(&e);
		}
		form_fini(&f);
	} else {
		json_t *obj;
		if (tjson_parse(body, len, 64 * 1024, 32, &obj, &e) != 0) {
			check_err(&e);
			return 0;
		}
		if (intake_report_from_json(obj, &ctx, &r, &e) == 0) {
			check_ok(&r);
			render_ok(&r);
			report_in_fini(&r);
		} else {
			check_err(&e);
		}
		json_decref(obj);
	}
	return 0;
}

#ifdef TRYGG_FUZZ_SEEDS
int
main(int argc, char **argv)
{
	static const char *const seeds[] = {
	    "\x00service_code=litter&lat=59.3324&long=18.0637&description=Bin+full",
	    "\x00service_code=graffiti&lat=59.33&long=18.065&attribute[surface]=wall&"
	    "attribute[tags][]=a&attribute[n]=3&email=a%40b.se&media_url=https%3A%2F%2Fx.se%2Fa",
	    "\x00service_code=litter&address_string=Sveav%C3%A4gen+1&api_key=k",
	    "\x00service_code=litter&lat=1&lat=2",
	    "\x01{\"category\":\"litter\",\"lat\":59.3324,\"long\":18.0637}",
	    "\x01{\"category\":\"graffiti\",\"lat\":59.335,\"long\":18.035,\"attributes\":"
	    "{\"surface\":\"wall\",\"when\":\"2026-11-25T12:00Z\"},\"contact\":{\"phone\":\"+46 "
	    "8\"}}",
	    "\x01{\"category\":\"litter\",\"address_string\":\"x\",\"description\":\"\\u00e5\"}",
	};
	if (argc < 2)
		return 2;
	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/seed-%zu", argv[1], i);
		FILE *f = fopen(path, "wb");
		if (f == NULL)
			return 1;
		/* The first byte is the selector, possibly NUL: write it explicitly. */
		fwrite(seeds[i], 1, 1, f);
		fwrite(seeds[i] + 1, 1, strlen(seeds[i] + 1), f);
		fclose(f);
	}
	return 0;
}
#endif
