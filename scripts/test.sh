#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, then checks
# formatting and lints and runs every test. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
# The console's browser test drives Debian's headless Chromium through chromedriver.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

# The OpenAPI test validates /openapi.json with the reference validator.
python3 -c "import openapi_spec_validator" 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check openapi-spec-validator

rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Everything on the embedded store (including the store conformance suite for both stores),
# then the whole HTTP suite again with every test on its own private redis-server.
cargo test --workspace --locked
CASEHUB_TEST_STORE=redis cargo test --locked --test it
