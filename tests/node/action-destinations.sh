#!/usr/bin/env bash
# Fetch Segment's @segment/action-destinations from the npm registry (its full dependency tree does
# not install) and keep only the destinations the tests load, beside the packages npm installed
# (@segment/actions-core, liquidjs, dayjs). Nothing of it is kept in git: tests/node/vendor/.
set -euo pipefail
cd "$(dirname "$0")"
VERSION=3.497.0
DEST=vendor/action-destinations
DESTINATIONS="mantle metronome chartmogul webhook segment"
complete=1
for d in $DESTINATIONS; do [ -d "$DEST/dist/destinations/$d" ] || complete=0; done
if [ "$complete" = 1 ] && [ -f "$DEST/VERSION" ] && [ "$(cat "$DEST/VERSION")" = "$VERSION" ]; then exit 0; fi
rm -rf "$DEST" vendor/tmp
mkdir -p vendor/tmp "$DEST/dist/destinations" "$DEST/dist/lib"
npm pack "@segment/action-destinations@$VERSION" --pack-destination vendor/tmp --loglevel=error >/dev/null
tar xzf "vendor/tmp/segment-action-destinations-$VERSION.tgz" -C vendor/tmp
for d in $DESTINATIONS; do
  cp -r "vendor/tmp/package/dist/destinations/$d" "$DEST/dist/destinations/$d"
done
cp vendor/tmp/package/dist/lib/dayjs.js "$DEST/dist/lib/"
rm -rf vendor/tmp
echo "$VERSION" > "$DEST/VERSION"
