# Two commands on a fresh machine: `make demo` runs the app on the bundled real clip, `make test` runs the tests.
.PHONY: install demo test test-fast soak bench
install:
	bash scripts/install.sh

demo: install
	@if [ -n "$$DISPLAY" ]; then .venv/bin/python main.py --demo; \
	else echo "no display: rendering headless to out/demo.mp4"; mkdir -p out; \
	.venv/bin/python main.py --demo --headless --record out/demo.mp4 --stats out/demo_stats.json; fi

test: install
	.venv/bin/python -m pytest -q -m 'not soak'

test-fast: install
	.venv/bin/python -m pytest -q

soak: install
	.venv/bin/python -m pytest -q -m soak

bench: install
	.venv/bin/python main.py bench --decoder --pipeline --modes track,headless,headless-direct,full,headless-serial,full-serial --repeat 3 --batches 1,64,256,1024 --json docs/benchmarks/cpu.json --plot docs/benchmarks/cpu.png
