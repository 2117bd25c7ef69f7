#!/bin/sh
# One-shot (docker-compose.yml service `temporal-namespace`, image temporalio/admin-tools): once the
# server answers, creates the namespace the app uses (TEMPORAL_NAMESPACE) unless it exists. The
# worker registers its search attributes in it at start.
set -eu
: "${TEMPORAL_ADDRESS:?}" "${NAMESPACE:?}"
temporal operator cluster health --address "$TEMPORAL_ADDRESS"
temporal operator namespace describe -n "$NAMESPACE" --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1 ||
  temporal operator namespace create -n "$NAMESPACE" --retention 3d --address "$TEMPORAL_ADDRESS"
echo "namespace $NAMESPACE is there"
