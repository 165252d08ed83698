# holdfast: GNU Make + pkg-config.  `make` builds into build/.
# SAN=1 builds an ASan+UBSan variant into build-san/.

PKGS     := libevent_core libevent_extra libevent_openssl libevent_pthreads openssl libcares
CC       ?= cc
ifeq ($(SAN),1)
BUILD    ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
else
BUILD    ?= build
SANFLAGS :=
endif
VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
CPPFLAGS += -D_GNU_SOURCE -DHOLDFAST_VERSION='"$(VERSION)"' -Isrc
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c17 -Wall -Wextra -Werror -Wshadow -Wformat=2 \
            -Wmissing-prototypes -pthread $(SANFLAGS) \
            $(shell pkg-config --cflags $(PKGS))
LDLIBS   += $(shell pkg-config --libs $(PKGS)) -pthread
LDFLAGS  += $(SANFLAGS)

# Every src/*.c but the two mains forms the library both binaries and the
# unit tests link against.
MAINS    := src/main.c src/holdfastctl.c
LIBSRC   := $(filter-out $(MAINS),$(wildcard src/*.c))
LIBOBJ   := $(LIBSRC:src/%.c=$(BUILD)/obj/%.o)
UNITSRC  := $(wildcard tests/unit/test_*.c)
UNITBIN  := $(UNITSRC:tests/unit/%.c=$(BUILD)/tests/%)
SHIMSRC  := $(wildcard tests/integration/lib/*.c)
SHIMLIB  := $(SHIMSRC:tests/integration/lib/%.c=$(BUILD)/tests/%.so)

.PHONY: all clean check unit integration bench
all: $(BUILD)/holdfast $(BUILD)/holdfastctl $(UNITBIN) $(SHIMLIB)

$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h) VERSION
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -c -o $@ $<

$(BUILD)/libholdfast.a: $(LIBOBJ)
	$(AR) rcs $@ $^

$(BUILD)/holdfast: $(BUILD)/obj/main.o $(BUILD)/libholdfast.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/holdfastctl: $(BUILD)/obj/holdfastctl.o $(BUILD)/libholdfast.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c tests/unit/t.h $(BUILD)/libholdfast.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itests/unit $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libholdfast.a $(LDLIBS)

# Fault-injection shims for integration tests (LD_PRELOAD), never sanitised:
# they are loaded into the sanitised daemon and must not carry a runtime.
$(BUILD)/tests/%.so: tests/integration/lib/%.c
	@mkdir -p $(@D)
	$(CC) -std=c17 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -shared -fPIC -o $@ $< -ldl

unit: all
	tests/run-unit $(BUILD)

integration: all
	tests/run-integration $(BUILD)

check: all
	tests/run-all $(BUILD)

# Benchmarks against Postfix (root, ~20 min; not part of check).
bench: all
	bench/run $(BUILD)

# libFuzzer harnesses, one per parser of peer input (tests/fuzz/), built
# with clang into build-fuzz/; tests/run-fuzz runs them on their seed corpora.
FUZZCC    ?= clang
FUZZDIR   := build-fuzz
FUZZSAN   := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZFLAGS := -std=c17 -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Werror \
             -Wshadow -Wformat=2 -Wmissing-prototypes -pthread \
             $(shell pkg-config --cflags $(PKGS))
# The whole library, as an archive like the unit tests': the linker takes
# only what a harness needs, however the modules come to depend on each other.
FUZZLIB   := $(FUZZDIR)/libholdfast.a
FUZZBIN   := $(patsubst tests/fuzz/%.c,$(FUZZDIR)/%,\
             $(wildcard tests/fuzz/fuzz_*.c))

.PHONY: fuzz
fuzz: $(FUZZBIN)

$(FUZZDIR)/obj/%.o: src/%.c $(wildcard src/*.h) VERSION
	@mkdir -p $(@D)
	$(FUZZCC) $(CPPFLAGS) $(FUZZFLAGS) $(FUZZSAN) \
	    -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZLIB): $(LIBSRC:src/%.c=$(FUZZDIR)/obj/%.o)
	$(AR) rcs $@ $^

$(FUZZBIN): $(FUZZDIR)/%: tests/fuzz/%.c $(FUZZLIB) $(wildcard src/*.h)
	$(FUZZCC) $(CPPFLAGS) $(FUZZFLAGS) $(FUZZSAN) -fsanitize=fuzzer \
	    -o $@ $< $(FUZZLIB) $(LDLIBS)

clean:
	rm -rf build build-san $(FUZZDIR)

# Install: `make install PREFIX=/usr DESTDIR=/tmp/stage`.  The daemon and
# holdfastctl read /etc/holdfast/holdfast.conf by default, so SYSCONFDIR
# stays /etc whatever PREFIX is; the unit's ExecStart follows SBINDIR.
PREFIX         ?= /usr/local
SBINDIR        ?= $(PREFIX)/sbin
MANDIR         ?= $(PREFIX)/share/man
SYSCONFDIR     ?= /etc
SYSTEMDUNITDIR ?= /lib/systemd/system
INSTALL        ?= install

.PHONY: install
install: $(BUILD)/holdfast $(BUILD)/holdfastctl
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man5 \
	    $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSCONFDIR)/holdfast \
	    $(DESTDIR)$(SYSTEMDUNITDIR)
	$(INSTALL) -m 0755 $(BUILD)/holdfast $(BUILD)/holdfastctl \
	    scripts/holdfast-upgrade $(DESTDIR)$(SBINDIR)/
	$(INSTALL) -m 0644 doc/holdfast.8 doc/holdfastctl.8 \
	    $(DESTDIR)$(MANDIR)/man8/
	$(INSTALL) -m 0644 doc/holdfast.conf.5 $(DESTDIR)$(MANDIR)/man5/
	$(INSTALL) -m 0644 etc/holdfast.conf \
	    $(DESTDIR)$(SYSCONFDIR)/holdfast/holdfast.conf.example
	sed 's|/usr/sbin/holdfast|$(SBINDIR)/holdfast|g' etc/holdfast.service \
	    > $(DESTDIR)$(SYSTEMDUNITDIR)/holdfast.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/holdfast.service
	sed 's|/usr/sbin/holdfastctl|$(SBINDIR)/holdfastctl|g' \
	    etc/holdfast-check-mx.service \
	    > $(DESTDIR)$(SYSTEMDUNITDIR)/holdfast-check-mx.service
	$(INSTALL) -m 0644 etc/holdfast-check-mx.timer $(DESTDIR)$(SYSTEMDUNITDIR)/
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/holdfast-check-mx.service
	$(INSTALL) -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions
	$(INSTALL) -m 0644 contrib/bash-completion/holdfastctl \
	    $(DESTDIR)$(PREFIX)/share/bash-completion/completions/holdfastctl
	$(INSTALL) -d $(DESTDIR)$(PREFIX)/share/holdfast/notify
	$(INSTALL) -m 0755 contrib/notify/holdfast-ntfy \
	    contrib/notify/holdfast-webhook $(DESTDIR)$(PREFIX)/share/holdfast/notify/

-include $(LIBOBJ:.o=.d) $(BUILD)/obj/main.d $(BUILD)/obj/holdfastctl.d
