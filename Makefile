# Two entry points for a fresh machine: `make demo` (set up, build the demo catalogue, open the
# web app on it) and `make test` (set up, run the tests). Everything else is the `stylesense` command.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOME_DIR ?= stylesense-home
SHARED ?= ../shared/data
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FUZZ_SECONDS ?= 20

.PHONY: setup fashion-mnist wrk chromium java demo test fuzz bench clean
UI_PORT ?= 8501

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# Without the shared Kaggle photos the demo uses Fashion-MNIST from Debian's package.
fashion-mnist:
	@[ -f $(SHARED)/fashion-product-images/styles.csv ] || [ -d /usr/share/datasets/fashion-mnist ] || \
	  ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist)

# The CLI tour (import, search, shoppers, a live recommendation), then the web app on its home.
demo: setup fashion-mnist
	$(BIN)/stylesense --home $(HOME_DIR) demo
	$(BIN)/stylesense --home $(HOME_DIR) ui --port $(UI_PORT)

# The browser tests drive Debian's chromium (Playwright's own download cannot work offline).
chromium:
	@command -v chromium >/dev/null || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

# The Spark engine's tests (tests/test_spark_als.py) run pyspark on Debian's Java 17.
java:
	@command -v java >/dev/null || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q openjdk-17-jre-headless)

# The tests, then each atheris harness for FUZZ_SECONDS (fuzz/run.py; exit 1 on a finding).
test: setup chromium java
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q -rs
	$(BIN)/python fuzz/run.py --seconds $(FUZZ_SECONDS)

fuzz: setup
	$(BIN)/python fuzz/run.py --seconds $(FUZZ_SECONDS)

# bench/api.py drives the server with wrk, the HTTP load generator (Debian's package).
wrk:
	@command -v wrk >/dev/null || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q wrk)

bench: setup wrk
	$(BIN)/python bench/cli.py
	$(BIN)/python bench/embedding.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/index_scale.py
	$(BIN)/python bench/adapter.py
	$(BIN)/python bench/recommenders.py
	$(BIN)/python bench/api.py

clean:
	rm -rf $(HOME_DIR) bench/results
