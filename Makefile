# ccbridge — the two commands the README promises, plus a few helpers.
#   make run    run the bots of ./config.yaml (the console bot when none is configured)
#   make test   install everything into .venv and run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=
PYTEST_ARGS ?=
# pytest-xdist workers: one per CPU (the real-CLI tests are independent)
JOBS   ?= auto

.PHONY: install run test lint bench check clean mutation

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[all,test]'
	touch $(STAMP)

install: $(STAMP)

# `make run` installs what running needs: ccbridge with every platform's extra, no test tools
# (`make run EXTRAS=telegram` for one platform only); nothing when `make test` installed all already.
run: EXTRAS ?= all
run:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test $(STAMP) -nt pyproject.toml || test $(VENV)/.run-stamp-$(EXTRAS) -nt pyproject.toml || \
	  { $(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]' && \
	    touch $(VENV)/.run-stamp-$(EXTRAS); }
	$(BIN)/python run_bot.py $(ARGS)

check: $(STAMP)
	$(BIN)/python run_bot.py --check $(ARGS)

# `make test` also installs what the tests start when missing (redis-server, PostgreSQL, bubblewrap, socat).
test: $(STAMP)
	bash tests/ensure_servers.sh
	$(BIN)/python -m pytest -n $(JOBS) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

# `make mutation`: mutation testing (mutmut) of the security-critical code: access, grants, the tool
# policy, workspaces, text splitting, the signature checks, dedupe. Slow, so not in CI: run it when those
# modules change and record the scores in docs/testing.md. [tool.mutmut] in pyproject.toml names the files
# and the (fast, unit-level) tests; MUTANTS the functions mutated; MUTATION_JOBS the mutants run at once.
# `.venv/bin/mutmut show <name>` shows a mutant; mutants/ (gitignored) keeps the results.
MUTATION_JOBS ?= 2
MUTANTS ?= 'core.access.*' 'core.grants.*' 'core.tool_policy.*' 'core.workspace.*' 'core.text_split.*' \
	'adapters.http_api.auth.*' 'adapters.slack.transport.x*HttpTransport*' \
	'core.listener.*' 'adapters.telegram.webhook.*' \
	'adapters.feishu.callback.*' 'core.dispatcher.x*Dispatcher*first_delivery*' \
	'core.dispatcher.x*Dispatcher*_accept*' 'core.coordination.x*StoreSeenKeys*' \
	'core.coordination.memory.x*MemorySeenKeys*' 'core.store.memory.x*MemoryStore*claim_key*' \
	'core.store.sqlite.x*SQLiteStore*claim_key*'

mutation: $(STAMP)
	$(BIN)/mutmut run --max-children $(MUTATION_JOBS) $(MUTANTS)
	@echo "mutation score per module (mutants of the functions in MUTANTS):"
	@$(BIN)/mutmut results --all=true | awk -F': ' '$$2 != "not checked" { m = $$1; sub(/^ +/, "", m); \
	  sub(/\.x[^.]*$$/, "", m); n[m]++; if ($$2 == "killed") k[m]++; else if ($$2 == "survived") s[m]++; \
	  else o[m]++ } END { for (m in n) printf "  %-30s killed %4d  survived %4d  other %3d  total %4d\n", \
	  m, k[m], s[m], o[m], n[m] }' | sort
	@$(BIN)/mutmut results | grep -v ': not checked$$' || true

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
