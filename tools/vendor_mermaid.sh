#!/usr/bin/env bash
# Replace the vendored copy of mermaid (docs/assets/mermaid/) with the given
# release from its npm package, e.g. `bash tools/vendor_mermaid.sh 11.17.2`.
#
# Why vendored: mkdocs-material otherwise loads mermaid from a CDN when a page
# is viewed, so the sequence diagrams show as raw text offline (a laptop, an
# air-gapped build server, the docs of the sdist). A committed copy builds and
# renders with no network, the same on every machine and on a hosted site.
set -euo pipefail
version=${1:?usage: tools/vendor_mermaid.sh MERMAID_VERSION}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "mermaid@$version" >/dev/null && tar xzf mermaid-*.tgz)
cp "$work/package/dist/mermaid.min.js" docs/assets/mermaid/mermaid.min.js
cp "$work/package/LICENSE" docs/assets/mermaid/LICENSE
sed -i "s/^version: .*/version: $version/" docs/assets/mermaid/SOURCE.txt
sha256=$(sha256sum docs/assets/mermaid/mermaid.min.js | cut -d' ' -f1)
sed -i "s/^sha256: .*/sha256: $sha256/" docs/assets/mermaid/SOURCE.txt
echo "mermaid $version vendored in docs/assets/mermaid/"
