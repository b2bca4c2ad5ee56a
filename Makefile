.PHONY: up down status test fuzz chaos lint bench bench-accept bench-sign bench-deliver

up:       ## bring the whole stack up locally (installs what is missing)
	scripts/dev.sh up

down:     ## stop everything `make up` started
	scripts/dev.sh down

status:
	scripts/dev.sh status

test:     ## run the test suite against real RabbitMQ and FerretDB (started if needed)
	scripts/test.sh

fuzz:     ## the fuzz tests at length (HATO_FUZZ_EXAMPLES, default 5000 a test, random seeds)
	HYPOTHESIS_PROFILE=fuzz scripts/test.sh -x --timeout=7200 tests/fuzz tests/e2e/test_openapi_fuzz.py

chaos:    ## 400 mails at 20/s while every service, the database and RabbitMQ's app are killed
	HATO_CHAOS_MAILS=400 HATO_CHAOS_RATE=20 HATO_CHAOS_RABBITMQ=1 scripts/test.sh -s tests/e2e/test_chaos.py

lint:
	.venv/bin/ruff check .

bench:         ## Hato side by side with Postfix + OpenDKIM: throughput, latency, memory (~20 min)
	scripts/bootstrap.sh && .venv/bin/pip install -q -e ".[bench]" && scripts/infra.sh up \
	  && scripts/infra.sh bench-tools && .venv/bin/python -m bench.compare $(BENCH_ARGS)

bench-accept:  ## accept throughput and latency of the SMTP and HTTP doors
	scripts/bootstrap.sh && scripts/infra.sh up && .venv/bin/python -m bench.accept

bench-sign:    ## DKIM signatures per second against raw OpenSSL; memory for 25 MB
	scripts/bootstrap.sh && .venv/bin/python -m bench.sign

bench-deliver: ## delivery throughput to a local sink, with and without connection reuse
	scripts/bootstrap.sh && .venv/bin/python -m bench.deliver
