# iam-key-export — the two commands of the README, plus the benchmark.
#   make demo    install if needed, start the bundled fake IAM, export, show the snapshot
#   make test    type-check, then every node:test suite
#   make bench   speed, rate use, memory and checkpoint cost (prints a table)
#   make mutate  mutation testing of the core modules (StrykerJS; not part of make test)

NODE_DEPS := node_modules/.package-lock.json
TESTS := $(sort $(wildcard test/*.test.ts))

.PHONY: demo test typecheck bench mutate clean

# Installs exactly the locked dependencies when they are missing or the lock changed.
$(NODE_DEPS): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

demo: $(NODE_DEPS)
	node --import tsx test/demo.ts

typecheck: $(NODE_DEPS)
	npx tsc --noEmit
	node --import tsx schemas/generate.ts --check

# The CLI runs of the tests use one build, made as dist/ is (test-dist/, beside dist/
# so its relative paths resolve), not tsx compiling the sources at every start.
test: typecheck
	node scripts/build.js test-dist
	IAM_KEY_EXPORT_BUILD=test-dist node --import tsx --test --test-concurrency=2 $(TESTS)

bench: $(NODE_DEPS)
	node --import tsx bench/run.ts

# Modules and their unit test files: stryker.config.mjs; one module after another, then
# the score table. Reports: reports/mutation/<module>.{json,html}.
# MODULES="pipeline/lease.ts pipeline/errors.ts" for some; STRYKER_FLAGS=--incremental to redo only what changed.
mutate: $(NODE_DEPS)
	node --import tsx test/support/mutate.ts $(MODULES) -- $(STRYKER_FLAGS)

clean:
	rm -rf export dist test-dist
