# Trygg top-level Makefile. `make help` lists the targets.
#
# Layout: services/common -> build/libtrygg.a; each services/<name>/ and
# tests/tools/<name>.c -> build/bin/trygg-<name>; tests/unit/test_*.c ->
# build/tests/test_*; proto/trygg/*.proto -> build/gen/trygg/*.pb-c.[ch].

CC       ?= cc
BUILD    ?= build
SANITIZE ?=
WERROR   ?= $(if $(CI),-Werror,)

REQUIRED_PKGS := libuv libprotobuf-c libpq libmicrohttpd jansson libcurl libcrypto cmocka

CFLAGS_WARN := -std=c11 -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes \
	-Wpointer-arith -Wformat=2 -Wundef -Wno-format-nonliteral -Wshadow $(WERROR)
CFLAGS_OPT  ?= -O2 -g
CPPFLAGS    += -D_GNU_SOURCE -Iservices/common -I$(BUILD)/gen -Iservices
PKG_CFLAGS  := $(shell pkg-config --cflags $(REQUIRED_PKGS) 2>/dev/null) -I/usr/include/postgresql
PKG_LIBS    := $(shell pkg-config --libs libuv libprotobuf-c libpq libmicrohttpd jansson libcurl libcrypto 2>/dev/null) -lnng -lpthread -lm
ifneq ($(SANITIZE),)
  CFLAGS_OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=$(SANITIZE) -fno-sanitize-recover=undefined
  LDFLAGS    += -fsanitize=$(SANITIZE)
  BUILD      := build-san
endif
CFLAGS := $(CFLAGS_WARN) $(CFLAGS_OPT) $(PKG_CFLAGS)

PROTOS      := $(wildcard proto/trygg/*.proto)
PROTO_C     := $(patsubst proto/%.proto,$(BUILD)/gen/%.pb-c.c,$(PROTOS))
PROTO_H     := $(PROTO_C:.c=.h)
COMMON_SRC  := $(wildcard services/common/*.c)
COMMON_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(COMMON_SRC)) $(PROTO_C:.c=.o)
COMMON_SQL  := $(sort $(wildcard services/common/sql/*.sql))
LIB         := $(BUILD)/libtrygg.a

# Each service directory with a main.c is a program; its sql/ is embedded.
SERVICES    := $(filter-out common,$(notdir $(patsubst %/main.c,%,$(wildcard services/*/main.c))))
TOOLS       := $(patsubst tests/tools/%.c,%,$(wildcard tests/tools/*.c))
BINS        := $(addprefix $(BUILD)/bin/trygg-,$(SERVICES) $(TOOLS))
UNIT_SRC    := $(wildcard tests/unit/test_*.c)
UNIT_BINS   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all binaries deps-check help run test unit integration bench fuzz format check-format clean compose-check compose-test
# The build runs in a sub-make so that flags found by pkg-config are read
# after deps-check has installed anything that was missing.
all: deps-check
	@$(MAKE) --no-print-directory binaries
binaries: $(BINS) $(UNIT_BINS)

help:
	@echo "make            build everything into $(BUILD)/ (installs missing packages first)"
	@echo "make run        start Postgres (local, under var/) and all services"
	@echo "make test       unit + integration tests on a throwaway Postgres"
	@echo "make bench      backbone benchmarks; see BENCHMARKS.md"
	@echo "make fuzz       short libFuzzer runs (needs clang)"
	@echo "make SANITIZE=address,undefined test   the suite under ASan+UBSan"
	@echo "make format / check-format"
	@echo "make compose-check   validate docker-compose.yml, deploy/k8s, deploy/prometheus.yml"
	@echo "make compose-test    the whole system on docker-compose, for real (root; docs/operations.md)"
	@echo "deploy/install-deps.sh installs every package (Debian 12)"

# On a fresh machine, install what is missing (as root, or through sudo);
# otherwise say plainly what is missing instead of a wall of compiler errors.
deps-check:
	@missing=""; \
	for p in $(REQUIRED_PKGS); do pkg-config --exists $$p 2>/dev/null || missing="$$missing $$p"; done; \
	[ -f /usr/include/nng/nng.h ] || missing="$$missing nng(libnng-dev)"; \
	command -v protoc-c >/dev/null || missing="$$missing protoc-c(protobuf-c-compiler)"; \
	[ -x /usr/lib/postgresql/15/bin/initdb ] || missing="$$missing postgresql-15"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	[ -x /usr/bin/python3 ] || missing="$$missing python3"; \
	if [ -n "$$missing" ]; then \
	  echo "Missing dependencies:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then deploy/install-deps.sh || exit 1; \
	  elif command -v sudo >/dev/null && [ -z "$(NO_INSTALL)" ]; then \
	    echo "Installing them with: sudo deploy/install-deps.sh"; sudo deploy/install-deps.sh || exit 1; \
	  else echo "Install them with: sudo deploy/install-deps.sh"; exit 1; fi; fi

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto
	@mkdir -p $(dir $@)
	protoc-c --proto_path=proto --c_out=$(BUILD)/gen $<

$(BUILD)/gen/%.pb-c.o: $(BUILD)/gen/%.pb-c.c
	$(CC) $(CPPFLAGS) $(CFLAGS_OPT) $(PKG_CFLAGS) -w -c $< -o $@

$(BUILD)/obj/%.o: %.c $(PROTO_H) | $(BUILD)/obj
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(addprefix -I,$(wildcard $(dir $<))) $(foreach s,$(SERVICES),$(if $(findstring test_$(subst -,_,$(s))_,$<),-Iservices/$(s))) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj:
	@mkdir -p $@

$(LIB): $(COMMON_OBJ) $(BUILD)/obj/common_sql.o
	@rm -f $@
	ar rcs $@ $^

# SQL migrations are compiled into the binaries, so a deployed program needs
# no files beside it.
$(BUILD)/gen/common_sql.c: $(COMMON_SQL) tools/embed-sql.sh
	@mkdir -p $(dir $@)
	sh tools/embed-sql.sh common $(COMMON_SQL) > $@
$(BUILD)/obj/common_sql.o: $(BUILD)/gen/common_sql.c
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

define service_rules
$(BUILD)/gen/$(1)_sql.c: $$(sort $$(wildcard services/$(1)/sql/*.sql)) tools/embed-sql.sh
	@mkdir -p $$(dir $$@)
	sh tools/embed-sql.sh $(subst -,_,$(1)) $$(sort $$(wildcard services/$(1)/sql/*.sql)) > $$@
$(BUILD)/gen/$(1)_web.c: $$(sort $$(wildcard services/$(1)/web/*)) tools/embed-files.sh
	@mkdir -p $$(dir $$@)
	sh tools/embed-files.sh $(subst -,_,$(1)) $$(sort $$(wildcard services/$(1)/web/*)) > $$@
$(BUILD)/bin/trygg-$(1): $$(patsubst %.c,$(BUILD)/obj/%.o,$$(wildcard services/$(1)/*.c)) $(BUILD)/gen/$(1)_sql.c $(BUILD)/gen/$(1)_web.c $(LIB)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CPPFLAGS) $$(CFLAGS) -Iservices/$(1) $$(filter %.o %.c,$$^) $(LIB) $$(LDFLAGS) $(PKG_LIBS) -o $$@
endef
$(foreach s,$(SERVICES),$(eval $(call service_rules,$(s))))

# Test tools (a test publisher and subscriber, bench drivers): one file each,
# with migrations (if any) in tests/tools/sql/<name>/.
$(BUILD)/gen/tool_%_sql.c: tools/embed-sql.sh $(wildcard tests/tools/sql/*/*.sql)
	@mkdir -p $(dir $@)
	sh tools/embed-sql.sh $* $(sort $(wildcard tests/tools/sql/$*/*.sql)) > $@
$(BUILD)/bin/trygg-%: $(BUILD)/obj/tests/tools/%.o $(BUILD)/gen/tool_%_sql.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(filter %.o %.c,$^) $(LIB) $(LDFLAGS) $(PKG_LIBS) -o $@

# A unit test of a service's own module is named test_<service>_<module>.c
# and links that service's objects (all but main.o) and embedded SQL.
define service_unit_rules
$(BUILD)/tests/test_$(subst -,_,$(1))_%: $(BUILD)/obj/tests/unit/test_$(subst -,_,$(1))_%.o \
    $$(patsubst %.c,$(BUILD)/obj/%.o,$$(filter-out services/$(1)/main.c,$$(wildcard services/$(1)/*.c))) \
    $(BUILD)/gen/$(1)_sql.c $(BUILD)/gen/$(1)_web.c $(LIB)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CPPFLAGS) $$(CFLAGS) -Iservices/$(1) $$(filter %.o %.c,$$^) $(LIB) $$(LDFLAGS) $(PKG_LIBS) $$(shell pkg-config --libs cmocka) -o $$@
endef
$(foreach s,$(SERVICES),$(eval $(call service_unit_rules,$(s))))

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $^ $(LDFLAGS) $(PKG_LIBS) $(shell pkg-config --libs cmocka) -o $@

run: all
	deploy/run-local.sh

test: all
	BUILD=$(BUILD) tests/run-all.sh

unit: all
	BUILD=$(BUILD) tests/run-all.sh --unit-only

# Each part measures its raw limits in the same run; see BENCHMARKS.md.
bench: all
	BUILD=$(BUILD) tests/bench/run-bench.sh
	BUILD=$(BUILD) tests/bench/intake-bench.sh
	@if [ -x tests/bench/notifier-bench.sh ]; then BUILD=$(BUILD) tests/bench/notifier-bench.sh; fi
	BUILD=$(BUILD) tests/bench/walks-bench.sh
	BUILD=$(BUILD) tests/bench/reporting-bench.sh

fuzz: deps-check
	tests/fuzz/run-fuzz.sh $(FUZZ_SECONDS)

# The compose file with every profile (dummy secrets: compose refuses to
# parse without them), the Kubernetes manifests and the scrape config; built
# first, so the check can hold every TRYGG_* name against --help.
COMPOSE_DUMMY_ENV := POSTGRES_PASSWORD=x INTAKE_DB_PASSWORD=x NOTIFIER_DB_PASSWORD=x \
	WALKS_DB_PASSWORD=x REPORTING_DB_PASSWORD=x TESTPUB_DB_PASSWORD=x TESTSUB_DB_PASSWORD=x \
	DEMO_CREW_SECRET=x
compose-check: all
	env $(COMPOSE_DUMMY_ENV) docker-compose -f docker-compose.yml --profile demo --profile tls \
	  --profile walks-reporting --profile backbone config -q
	/usr/bin/python3 tests/compose/check_manifests.py

# The whole system on docker-compose, started for real (tests/compose/run.py:
# starts a dockerd if none runs, builds the images, the demo journey,
# restarts, day-2 operations, down -v). Needs root; caches in
# /var/cache/trygg-compose (COMPOSE_TEST_CACHE).
compose-test:
	deploy/install-deps.sh --compose
	/usr/bin/python3 tests/compose/run.py

FORMAT_FILES = $(wildcard services/*/*.c services/*/*.h tests/unit/*.c tests/tools/*.c tests/fuzz/*.c tests/bench/*.c)
format:
	clang-format -i $(FORMAT_FILES)
check-format:
	clang-format --dry-run --Werror $(FORMAT_FILES)

clean:
	rm -rf build build-san

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
.SECONDARY:
