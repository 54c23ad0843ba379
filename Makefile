# Two commands (README): `make run` starts the product, `make test` runs the suite.
# Both set up what they need on a fresh machine first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test setup system-deps native lint format clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.deps: requirements.txt requirements-dev.txt constraints.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	touch $@

node_modules/.deps: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

setup: $(VENV)/.deps node_modules/.deps native

# The RTS fast path's native sender (issue 18; livecenter/media/rts/_rtssend.c):
# one call per viewer per frame writes, SRTP-protects (AES-GCM with OpenSSL,
# AES-CM with the system libsrtp2) and sendmmsg()s a frame's packets. Without
# their headers it is not built and the engine uses the pure-Python path
# (srtp.py logs which, once, at import).
NATIVE_SRC := livecenter/media/rts/_rtssend.c
NATIVE_SO = livecenter/media/rts/_rtssend$(shell $(PY) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
native: $(VENV)/bin/python
	@if [ -f /usr/include/srtp2/srtp.h ] && [ -f /usr/include/openssl/evp.h ]; then \
		$(MAKE) --no-print-directory $(NATIVE_SO); \
	else \
		echo "libsrtp2-dev or libssl-dev is missing (make system-deps): the RTS fast path stays pure Python"; \
	fi

livecenter/media/rts/_rtssend%.so: $(NATIVE_SRC)
	$(CC) -O2 -Wall -Wextra -Wno-missing-field-initializers -Wno-unused-parameter -shared -fPIC \
		-I"$$($(PY) -c "import sysconfig; print(sysconfig.get_paths()['include'])")" \
		-o $@ $< -lsrtp2 -lcrypto

# Debian's ffmpeg (publish and probe in engine tests) and chromium (browser tests).
# GStreamer WHIP publishers (tests/test_interop_gstreamer_whip.py; bookworm's
# plugins-bad 1.22 has no whipsink): webrtcbin driven from the system Python
# (python3-gi, gir1.2-gst-plugins-bad-1.0, gstreamer1.0-nice), and Meetecho's
# simple-whip-client, which bookworm ships but which aborts there (libsoup2 and 3).
# Janus 1.1 (bench/rts's C reference, issue 18; tests/test_bench_janus.py).
# libsrtp2-dev and libssl-dev: the RTS fast path's native sender (`native`, issue 18).
system-deps:
	@if ! command -v ffmpeg >/dev/null || ! command -v chromium >/dev/null || ! command -v srt-live-transmit >/dev/null \
			|| ! gst-inspect-1.0 rtmp2sink >/dev/null 2>&1 || ! gst-inspect-1.0 x264enc >/dev/null 2>&1 \
			|| ! gst-inspect-1.0 nicesrc >/dev/null 2>&1 || ! command -v whip-client >/dev/null || ! command -v janus >/dev/null \
			|| [ ! -f /usr/include/srtp2/srtp.h ] || [ ! -f /usr/include/openssl/evp.h ] \
			|| ! /usr/bin/python3 -c "import gi; gi.require_version('GstWebRTC', '1.0')" 2>/dev/null; then \
		echo "Installing Debian's ffmpeg, chromium, srt-tools, GStreamer (rtmp2sink, x264enc, voaacenc, webrtcbin), simple-whip-client, janus, libsrtp2-dev and libssl-dev"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq ffmpeg chromium srt-tools \
			gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly glib-networking \
			gstreamer1.0-nice python3-gi gir1.2-gst-plugins-bad-1.0 simple-whip-client janus libsrtp2-dev libssl-dev; \
	fi

run: setup
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_demo_operator
	exec $(PY) manage.py runall

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The whole suite runs on the embedded defaults (SQLite, in-memory layer,
# filesystem broker); when DATABASE_URL or REDIS_URL is set (CI sets both) what
# depends on the database engine, the channel layer or the broker (the
# `backends` mark, tests/conftest.py) runs again on PostgreSQL and Redis. The
# passes spread the tests over TEST_WORKERS pytest-xdist processes (most wait
# on sockets and peers, so more workers than cores pays), except the browser
# tests, which run after, one at a time: Chromium playing live video beside
# two other workers' encoders stalls on this 2-core machine class. Each
# worker has a Redis database of its own (tests/xdist_redis.py).
TEST_WORKERS ?= 3
test: setup system-deps lint
	env -u DATABASE_URL -u REDIS_URL $(PY) -m pytest -n $(TEST_WORKERS) -m "not browser"
	env -u DATABASE_URL -u REDIS_URL $(PY) -m pytest -m browser
	@if [ -n "$$DATABASE_URL$$REDIS_URL" ]; then \
		echo "== again on DATABASE_URL=$${DATABASE_URL:-(SQLite)} REDIS_URL=$${REDIS_URL:-(none)}: -m backends"; \
		$(PY) -m pytest -n $(TEST_WORKERS) -m "backends and not browser" && \
		$(PY) -m pytest -m "backends and browser"; \
	fi

clean:
	rm -rf $(VENV) node_modules var .pytest_cache .ruff_cache livecenter/media/rts/_rtssend*.so
