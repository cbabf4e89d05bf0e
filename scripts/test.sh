#!/usr/bin/env bash
# Runs the whole test suite: unit, conformance, property and integration
# tests (the integration tests start their own moto servers on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-test-env.sh
export AWS_EC2_METADATA_DISABLED=true
cargo test --all-targets "$@"
