/*
 * test_config.c: the declarative configuration (services/common/config.c):
 * parsing of every type, bounds, the error messages operators see, file and
 * environment precedence, reload semantics and masking of secrets.
 *
 * Each test starts from an environment with no TRYGG_* variables and no
 * DATABASE_URL, and removes its temporary files itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "stderr_capture.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

struct cfg {
	char *name;
	char *database_url;
	char *bus_pub_url;
	int http_port;
	bool verbose;
	size_t body_max;
	uint64_t drain_timeout;
	enum log_level log_level;
	char *api_secret;
};

static int workers; /* stored through ptr instead of an offset */

static const config_option table[] = {
    CONFIG_OPT_STRING("name", struct cfg, name, "trygg", 0, "Service name."),
    CONFIG_OPT_URL("database_url", struct cfg, database_url, NULL, CONFIG_REQUIRED,
        "Postgres URL."),
    CONFIG_OPT_URL("bus_pub_url", struct cfg, bus_pub_url, "tcp://127.0.0.1:5560", 0,
        "Where the publisher listens."),
    CONFIG_OPT_INT("http_port", struct cfg, http_port, "8080", 1, 65535, 0, "HTTP port."),
    CONFIG_OPT_BOOL("verbose", struct cfg, verbose, "false", CONFIG_RELOADABLE, "Chatty."),
    CONFIG_OPT_SIZE("body_max", struct cfg, body_max, "1M", 1024, 64 << 20, CONFIG_RELOADABLE,
        "Largest request body."),
    CONFIG_OPT_DURATION("drain_timeout", struct cfg, drain_timeout, "10s", 100, 3600000, 0,
        "Drain deadline."),
    CONFIG_OPT_LOGLEVEL("log_level", struct cfg, log_level, "info", CONFIG_RELOADABLE,
        "Minimum log level."),
    CONFIG_OPT_STRING("api_secret", struct cfg, api_secret, "default-secret",
        CONFIG_SECRET | CONFIG_RELOADABLE, "HMAC key."),
    {.name = "workers",
        .type = CONFIG_TYPE_INT,
        .def = "4",
        .min = 1,
        .max = 64,
        .ptr = &workers,
        .help = "Worker count."},
    CONFIG_END,
};

static char tmp_path[64];

/* Removes every TRYGG_* variable and DATABASE_URL from the environment. */
static void
clear_env(void)
{
	for (;;) {
		char name[256] = "";
		for (char **e = environ; *e != NULL; e++) {
			if (strncmp(*e, "TRYGG_", 6) == 0 ||
			    strncmp(*e, "DATABASE_URL=", 13) == 0) {
				snprintf(name, sizeof(name), "%.*s", (int)strcspn(*e, "="), *e);
				break;
			}
		}
		if (name[0] == '\0')
			return;
		unsetenv(name);
	}
}

static int
setup(void **state)
{
	(void)state;
	clear_env();
	tmp_path[0] = '\0';
	workers = -1;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	if (tmp_path[0] != '\0')
		unlink(tmp_path);
	clear_env();
	return 0;
}

/* Writes text to the temporary config file and points TRYGG_CONFIG_FILE at it. */
static void
write_file(const char *text)
{
	if (tmp_path[0] == '\0') {
		snprintf(tmp_path, sizeof(tmp_path), "/tmp/trygg-config-XXXXXX");
		int fd = mkstemp(tmp_path);
		assert_true(fd >= 0);
		close(fd);
	}
	FILE *f = fopen(tmp_path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	setenv("TRYGG_CONFIG_FILE", tmp_path, 1);
}

/* Loads the table into a fresh struct; returns config_load()'s result. */
static int
load(config *c, struct cfg *v)
{
	memset(v, 0, sizeof(*v));
	v->http_port = -1;
	return config_load(c, table, v);
}

/* Expects loading to fail with msg inside the error; checks v is untouched. */
static void
expect_error(const char *msg)
{
	config c;
	struct cfg v;
	assert_int_equal(load(&c, &v), TRYGG_ECONFIG);
	if (strstr(config_error(&c), msg) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", config_error(&c), msg);
	assert_int_equal(v.http_port, -1);
	assert_null(v.name);
	assert_int_equal(workers, -1);
	config_fini(&c);
}

static void
test_defaults(void **state)
{
	(void)state;
	setenv("DATABASE_URL", "postgresql://trygg@localhost/trygg", 1);
	config c;
	struct cfg v;
	assert_int_equal(load(&c, &v), 0);
	assert_string_equal(v.name, "trygg");
	assert_string_equal(v.database_url, "postgresql://trygg@localhost/trygg");
	assert_string_equal(v.bus_pub_url, "tcp://127.0.0.1:5560");
	assert_int_equal(v.http_port, 8080);
	assert_false(v.verbose);
	assert_int_equal(v.body_max, 1 << 20);
	assert_int_equal(v.drain_timeout, 10000);
	assert_int_equal(v.log_level, LOG_INFO);
	assert_string_equal(v.api_secret, "default-secret");
	assert_int_equal(workers, 4);
	assert_string_equal(config_error(&c), "");
	config_fini(&c);
	config_fini(NULL);
}

static void
test_every_type_from_env(void **state)
{
	(void)state;
	setenv("TRYGG_DATABASE_URL", "postgresql://a@h/db", 1);
	setenv("DATABASE_URL", "postgresql://loser@h/db", 1); /* TRYGG_ wins */
	setenv("TRYGG_NAME", "", 1);
	setenv("TRYGG_BUS_PUB_URL", "ipc:///tmp/trygg.sock", 1);
	setenv("TRYGG_HTTP_PORT", "65535", 1);
	setenv("TRYGG_VERBOSE", "YES", 1);
	setenv("TRYGG_BODY_MAX", "64M", 1);
	setenv("TRYGG_DRAIN_TIMEOUT", "1h", 1);
	setenv("TRYGG_LOG_LEVEL", "debug", 1);
	setenv("TRYGG_API_SECRET", "s3cret", 1);
	setenv("TRYGG_WORKERS", "64", 1);
	config c;
	struct cfg v;
	assert_int_equal(load(&c, &v), 0);
	assert_string_equal(v.name, "");
	assert_string_equal(v.database_url, "postgresql://a@h/db");
	assert_string_equal(v.bus_pub_url, "ipc:///tmp/trygg.sock");
	assert_int_equal(v.http_port, 65535);
	assert_true(v.verbose);
	assert_int_equal(v.body_max, 64 << 20);
	assert_int_equal(v.drain_timeout, 3600000);
	assert_int_equal(v.log_level, LOG_DEBUG);
	assert_string_equal(v.api_secret, "s3cret");
	assert_int_equal(workers, 64);
	config_fini(&c);
}

static void
test_scaled_values(void **state)
{
	(void)state;
	static const struct {
		const char *var, *text;
		uint64_t want;
	} cases[] = {
	    {"TRYGG_BODY_MAX", "1024", 1024},
	    {"TRYGG_BODY_MAX", "1k", 1024},
	    {"TRYGG_BODY_MAX", "512K", 512 * 1024},
	    {"TRYGG_BODY_MAX", "2MB", 2 << 20},
	    {"TRYGG_BODY_MAX", "3 MiB", 3 << 20},
	    {"TRYGG_DRAIN_TIMEOUT", "250", 250},
	    {"TRYGG_DRAIN_TIMEOUT", "1500ms", 1500},
	    {"TRYGG_DRAIN_TIMEOUT", "2s", 2000},
	    {"TRYGG_DRAIN_TIMEOUT", "3m", 180000},
	    {"TRYGG_DRAIN_TIMEOUT", "1h", 3600000},
	};
	setenv("DATABASE_URL", "postgresql:///trygg", 1);
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		setenv(cases[k].var, cases[k].text, 1);
		config c;
		struct cfg v;
		assert_int_equal(load(&c, &v), 0);
		uint64_t got =
		    strcmp(cases[k].var, "TRYGG_BODY_MAX") == 0 ? v.body_max : v.drain_timeout;
		if (got != cases[k].want)
			fail_msg("%s=%s gave %llu", cases[k].var, cases[k].text,
			    (unsigned long long)got);
		config_fini(&c);
		unsetenv(cases[k].var);
	}
}

static void
test_bool_spellings(void **state)
{
	(void)state;
	static const char *yes[] = {"true", "TRUE", "yes", "on", "1"};
	static const char *no[] = {"false", "No", "off", "0"};
	setenv("DATABASE_URL", "postgresql:///trygg", 1);
	for (size_t k = 0; k < 9; k++) {
		const char *t = k < 5 ? yes[k] : no[k - 5];
		setenv("TRYGG_VERBOSE", t, 1);
		config c;
		struct cfg v;
		assert_int_equal(load(&c, &v), 0);
		assert_int_equal(v.verbose, k < 5);
		config_fini(&c);
	}
}

static void
test_bad_values(void **state)
{
	(void)state;
	static const struct {
		const char *var, *text, *msg;
	} cases[] = {
	    {"TRYGG_HTTP_PORT", "70000", "TRYGG_HTTP_PORT=70000: must be between 1 and 65535"},
	    {"TRYGG_HTTP_PORT", "0", "TRYGG_HTTP_PORT=0: must be between 1 and 65535"},
	    {"TRYGG_HTTP_PORT", "80x", "TRYGG_HTTP_PORT=80x: not an integer"},
	    {"TRYGG_HTTP_PORT", "", "TRYGG_HTTP_PORT=: not an integer"},
	    {"TRYGG_HTTP_PORT", "99999999999", "TRYGG_HTTP_PORT=99999999999: out of range"},
	    {"TRYGG_WORKERS", "65", "TRYGG_WORKERS=65: must be between 1 and 64"},
	    {"TRYGG_VERBOSE", "maybe", "TRYGG_VERBOSE=maybe: not a boolean"},
	    {"TRYGG_BODY_MAX", "100", "TRYGG_BODY_MAX=100: must be between 1k and 64M"},
	    {"TRYGG_BODY_MAX", "65M", "TRYGG_BODY_MAX=65M: must be between 1k and 64M"},
	    {"TRYGG_BODY_MAX", "1T", "TRYGG_BODY_MAX=1T: not a size"},
	    {"TRYGG_BODY_MAX", "-1", "TRYGG_BODY_MAX=-1: not a size"},
	    {"TRYGG_BODY_MAX", "1.5M", "TRYGG_BODY_MAX=1.5M: not a size"},
	    {"TRYGG_BODY_MAX", "99999999999G", "TRYGG_BODY_MAX=99999999999G: too large"},
	    {"TRYGG_DRAIN_TIMEOUT", "2d", "TRYGG_DRAIN_TIMEOUT=2d: not a duration"},
	    {"TRYGG_DRAIN_TIMEOUT", "50ms",
	        "TRYGG_DRAIN_TIMEOUT=50ms: must be between 100ms and 1h"},
	    {"TRYGG_DRAIN_TIMEOUT", "2h", "TRYGG_DRAIN_TIMEOUT=2h: must be between 100ms and 1h"},
	    {"TRYGG_LOG_LEVEL", "loud", "TRYGG_LOG_LEVEL=loud: not a log level"},
	    {"TRYGG_BUS_PUB_URL", "localhost:5560", "TRYGG_BUS_PUB_URL=localhost:5560: not a URL"},
	    {"TRYGG_BUS_PUB_URL", "tcp://", "TRYGG_BUS_PUB_URL=tcp://: not a URL"},
	    {"TRYGG_BUS_PUB_URL", "tcp://a b:1", "not a URL"},
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		setenv("DATABASE_URL", "postgresql:///trygg", 1);
		setenv(cases[k].var, cases[k].text, 1);
		expect_error(cases[k].msg);
		unsetenv(cases[k].var);
	}
}

static void
test_all_errors_reported(void **state)
{
	(void)state;
	setenv("TRYGG_HTTP_PORT", "70000", 1);
	setenv("TRYGG_VERBOSE", "perhaps", 1);
	expect_error("TRYGG_HTTP_PORT=70000: must be between 1 and 65535");
	expect_error("TRYGG_VERBOSE=perhaps: not a boolean");
	expect_error("database_url is required: set TRYGG_DATABASE_URL (or DATABASE_URL)");
}

static void
test_url_password_not_echoed(void **state)
{
	(void)state;
	setenv("DATABASE_URL", "postgresql://app:hunter2@db host/trygg", 1);
	config c;
	struct cfg v;
	assert_int_equal(load(&c, &v), TRYGG_ECONFIG);
	assert_non_null(
	    strstr(config_error(&c), "DATABASE_URL=postgresql://app:***@db host/trygg"));
	assert_null(strstr(config_error(&c), "hunter2"));
	config_fini(&c);
}

static void
test_file_and_env(void **state)
{
	(void)state;
	write_file("# Trygg test config\n"
	           "\n"
	           "  http_port = 7000\n"
	           "verbose=on\n"
	           "name = \"  spaced  \"\n"
	           "database_url = postgresql://file@h/db\n"
	           "body_max = 2M\n");
	setenv("TRYGG_HTTP_PORT", "7100", 1);
	setenv("TRYGG_BODY_MAX", "4M", 1);
	config c;
	struct cfg v;
	assert_int_equal(load(&c, &v), 0);
	assert_int_equal(v.http_port, 7100); /* env wins */
	assert_int_equal(v.body_max, 4 << 20);
	assert_true(v.verbose); /* from the file */
	assert_string_equal(v.name, "  spaced  ");
	assert_int_equal(v.drain_timeout, 10000); /* default */
	assert_string_equal(v.database_url, "postgresql://file@h/db");
	config_fini(&c);
}

static void
test_file_url_comment_is_value(void **state)
{
	(void)state;
	/* Everything after '=' is the value: '#' can occur in passwords. */
	write_file("database_url = postgresql://u:pa#ss@h/db\n");
	config c;
	struct cfg v;
	assert_int_equal(load(&c, &v), 0);
	assert_string_equal(v.database_url, "postgresql://u:pa#ss@h/db");
	config_fini(&c);
}

static void
test_file_errors(void **state)
{
	(void)state;
	char msg[256];
	setenv("DATABASE_URL", "postgresql:///trygg", 1);

	write_file("http_port = 8081\n\nhtp_port = 8082\n");
	snprintf(msg, sizeof(msg), "%s:3: unknown option \"htp_port\"", tmp_path);
	expect_error(msg);

	write_file("# c\nhttp_port = 0\n");
	snprintf(msg, sizeof(msg), "%s:2: http_port = 0: must be between 1 and 65535", tmp_path);
	expect_error(msg);

	/* A bad file value is an error even when the environment overrides it. */
	setenv("TRYGG_HTTP_PORT", "8080", 1);
	expect_error(msg);
	unsetenv("TRYGG_HTTP_PORT");

	write_file("http_port 8080\n");
	snprintf(msg, sizeof(msg), "%s:1: expected `name = value`", tmp_path);
	expect_error(msg);

	write_file("http_port = 1\nhttp_port = 2\n");
	snprintf(msg, sizeof(msg), "%s:2: http_port is already set on line 1", tmp_path);
	expect_error(msg);

	setenv("TRYGG_CONFIG_FILE", "/nonexistent/trygg.conf", 1);
	expect_error("TRYGG_CONFIG_FILE=/nonexistent/trygg.conf: cannot open: No such file");
}

static void
test_unknown_env_warns(void **state)
{
	(void)state;
	setenv("DATABASE_URL", "postgresql:///trygg", 1);
	setenv("TRYGG_HTTP_PROT", "8080", 1);
	config c;
	struct cfg v;
	struct capture cap;
	capture_start(&cap);
	int rc = load(&c, &v);
	char *out = capture_end(&cap);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, "\"level\":\"warn\""));
	assert_non_null(strstr(out, "\"msg\":\"config_unknown_env\",\"name\":\"TRYGG_HTTP_PROT\""));
	assert_null(strstr(out, "TRYGG_HTTP_PORT"));
	free(out);
	config_fini(&c);
}

static void
test_reload_error_keeps_old(void **state)
{
	(void)state;
	write_file("database_url = postgresql:///a\nbody_max = 1M\nverbose = false\n");
	config c;
	struct cfg v;
	assert_int_equal(load(&c, &v), 0);
	char *old_url = v.database_url;

	/* One good change and one bad value: nothing may be applied. */
	write_file("database_url = postgresql:///a\nbody_max = 2M\nverbose = sometimes\n");
	struct capture cap;
	capture_start(&cap);
	int rc = config_reload(&c);
	char *out = capture_end(&cap);
	assert_int_equal(rc, TRYGG_ECONFIG);
	assert_non_null(strstr(config_error(&c), ":3: verbose = sometimes: not a boolean"));
	assert_non_null(strstr(out, "config_reload_failed"));
	free(out);
	assert_int_equal(v.body_max, 1 << 20);
	assert_false(v.verbose);
	assert_ptr_equal(v.database_url, old_url);

	/* Fixed: the reloadable options change. */
	write_file("database_url = postgresql:///a\nbody_max = 2M\nverbose = true\n"
	           "log_level = warn\n");
	capture_start(&cap);
	rc = config_reload(&c);
	out = capture_end(&cap);
	assert_int_equal(rc, 0);
	assert_string_equal(config_error(&c), "");
	assert_int_equal(v.body_max, 2 << 20);
	assert_true(v.verbose);
	assert_int_equal(v.log_level, LOG_WARN);
	assert_non_null(strstr(out, "\"msg\":\"config_changed\",\"name\":\"body_max\""));
	assert_non_null(strstr(out, "\"msg\":\"config_reloaded\",\"changed\":3"));
	free(out);
	config_fini(&c);
}

static void
test_reload_non_reloadable_kept(void **state)
{
	(void)state;
	write_file("database_url = postgresql:///a\nhttp_port = 7000\napi_secret = one\n");
	config c;
	struct cfg v;
	assert_int_equal(load(&c, &v), 0);
	char *old_secret = v.api_secret;

	write_file("database_url = postgresql:///b\nhttp_port = 7001\napi_secret = two\n");
	struct capture cap;
	capture_start(&cap);
	int rc = config_reload(&c);
	char *out = capture_end(&cap);
	assert_int_equal(rc, 0);
	assert_int_equal(v.http_port, 7000);
	assert_string_equal(v.database_url, "postgresql:///a");
	assert_string_equal(v.api_secret, "two");
	/* A pointer taken before the reload still points at live memory. */
	assert_string_equal(old_secret, "one");
	assert_non_null(strstr(out,
	    "\"msg\":\"config_not_reloadable\",\"name\":\"http_port\","
	    "\"kept\":\"7000\",\"wanted\":\"7001\""));
	assert_non_null(strstr(out, "\"msg\":\"config_not_reloadable\",\"name\":\"database_url\""));
	assert_non_null(strstr(out,
	    "\"msg\":\"config_changed\",\"name\":\"api_secret\","
	    "\"value\":\"********\""));
	assert_null(strstr(out, "two"));
	free(out);

	/* A second reload with the same file changes nothing more. */
	capture_start(&cap);
	rc = config_reload(&c);
	out = capture_end(&cap);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, "\"changed\":0"));
	free(out);
	config_fini(&c);
}

static void
test_secret_masking(void **state)
{
	(void)state;
	write_file("api_secret = s3cret-value\n");
	setenv("DATABASE_URL",
	    "postgresql://app:hunter2@db:5432/trygg?sslmode=require&password=xyz789", 1);
	setenv("TRYGG_BUS_PUB_URL", "tcp://0.0.0.0:5560", 1);
	config c;
	struct cfg v;
	assert_int_equal(load(&c, &v), 0);
	char buf[256];
	assert_string_equal(config_show(&c, "api_secret", buf, sizeof(buf)), "********");
	assert_string_equal(config_show(&c, "database_url", buf, sizeof(buf)),
	    "postgresql://app:***@db:5432/trygg?sslmode=require&password=***");
	assert_string_equal(config_show(&c, "bus_pub_url", buf, sizeof(buf)), "tcp://0.0.0.0:5560");
	assert_string_equal(config_show(&c, "body_max", buf, sizeof(buf)), "1M");
	assert_string_equal(config_show(&c, "drain_timeout", buf, sizeof(buf)), "10s");
	assert_string_equal(config_show(&c, "verbose", buf, sizeof(buf)), "false");
	assert_string_equal(config_show(&c, "log_level", buf, sizeof(buf)), "info");
	assert_null(config_show(&c, "nope", buf, sizeof(buf)));

	struct capture cap;
	capture_start(&cap);
	config_log(&c);
	char *out = capture_end(&cap);
	assert_null(strstr(out, "s3cret"));
	assert_null(strstr(out, "hunter2"));
	assert_null(strstr(out, "xyz789"));
	/* One valid JSON line per option, with its source. */
	int lines = 0;
	for (char *line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		json_error_t jerr;
		json_t *j = json_loads(line, 0, &jerr);
		if (j == NULL)
			fail_msg("not JSON: %s", line);
		assert_string_equal(json_string_value(json_object_get(j, "msg")), "config_value");
		const char *name = json_string_value(json_object_get(j, "name"));
		const char *src = json_string_value(json_object_get(j, "source"));
		assert_non_null(name);
		assert_non_null(src);
		if (strcmp(name, "database_url") == 0)
			assert_string_equal(src, "DATABASE_URL");
		if (strcmp(name, "http_port") == 0)
			assert_string_equal(src, "default");
		if (strcmp(name, "bus_pub_url") == 0)
			assert_string_equal(src, "TRYGG_BUS_PUB_URL");
		if (strcmp(name, "api_secret") == 0)
			assert_non_null(strstr(src, ":1"));
		json_decref(j);
		lines++;
	}
	assert_int_equal(lines, 10);
	free(out);
	config_fini(&c);
}

static void
test_help(void **state)
{
	(void)state;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	config_print_help(table, f);
	fclose(f);
	assert_non_null(strstr(text,
	    "  http_port (TRYGG_HTTP_PORT)\n      HTTP port.\n"
	    "      int, default 8080, between 1 and 65535\n"));
	assert_non_null(strstr(text, "database_url (TRYGG_DATABASE_URL or DATABASE_URL)"));
	assert_non_null(strstr(text, "url, required\n"));
	assert_non_null(strstr(text, "size, default 1M, between 1k and 64M, reloadable\n"));
	assert_non_null(strstr(text, "string, default ********, reloadable, secret\n"));
	assert_null(strstr(text, "default-secret"));
	free(text);
}

static void
test_bad_table(void **state)
{
	(void)state;
	struct cfg v;
	const config_option dup[] = {
	    CONFIG_OPT_INT("http_port", struct cfg, http_port, "1", 0, 0, 0, NULL),
	    CONFIG_OPT_INT("http_port", struct cfg, http_port, "1", 0, 0, 0, NULL),
	    CONFIG_OPT_INT("Bad-Name", struct cfg, http_port, "1", 0, 0, 0, NULL),
	    CONFIG_OPT_INT("backwards", struct cfg, http_port, "1", 10, 1, 0, NULL),
	    CONFIG_END,
	};
	config c;
	assert_int_equal(config_load(&c, dup, &v), TRYGG_ECONFIG);
	assert_non_null(strstr(config_error(&c), "http_port declared twice"));
	assert_non_null(strstr(config_error(&c), "bad option name \"Bad-Name\""));
	assert_non_null(strstr(config_error(&c), "backwards: min > max"));
	config_fini(&c);

	const config_option bad_default[] = {
	    CONFIG_OPT_INT("http_port", struct cfg, http_port, "0", 1, 65535, 0, NULL),
	    CONFIG_END,
	};
	assert_int_equal(config_load(&c, bad_default, &v), TRYGG_ECONFIG);
	assert_string_equal(config_error(&c),
	    "http_port: default \"0\" is invalid: must be between 1 and 65535");
	config_fini(&c);
}

int
main(void)
{
	log_init("test_config", LOG_INFO);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_every_type_from_env, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_scaled_values, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bool_spellings, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_values, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_all_errors_reported, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_url_password_not_echoed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_and_env, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_url_comment_is_value, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_env_warns, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reload_error_keeps_old, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reload_non_reloadable_kept, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_secret_masking, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_help, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_table, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
