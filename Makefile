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

.PHONY: all clean check unit integration
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

clean:
	rm -rf build build-san

-include $(LIBOBJ:.o=.d) $(BUILD)/obj/main.d $(BUILD)/obj/holdfastctl.d
