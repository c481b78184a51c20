#! /bin/sh
##
## build.sh --
##   Set-up, tests, demo and builds for xcluster-cni.
##
## Commands;
##

prg=$(basename $0)
dir=$(cd "$(dirname "$0")" && pwd)
# A scratch folder, made by the commands that need one (and removed on every exit).
tmp=""

# The one place the Deno version is pinned.
DENO_VERSION=2.9.6
DEBIAN_PACKAGES="iproute2 containernetworking-plugins iputils-ping openssl"

die() {
	echo "ERROR: $*" >&2
	test -n "$tmp" && rm -rf "$tmp"
	exit 1
}
help() {
	grep '^##' $0 | cut -c3-
	exit 0
}
test -n "$1" || help
echo "$1" | grep -qi "^help\|-h" && help

##   env
##     Print environment.
cmd_env() {
	echo "DENO_VERSION=$DENO_VERSION"
	echo "DEBIAN_PACKAGES=\"$DEBIAN_PACKAGES\""
}

##   setup
##     Install what is missing on a Debian machine (as root): Deno from npm and
##     the Debian packages the tests and the demo use.
cmd_setup() {
	if ! deno --version 2>/dev/null | grep -q "^deno $DENO_VERSION "; then
		command -v npm > /dev/null || die "npm is needed to install Deno"
		npm install -g --no-fund --no-audit "deno@$DENO_VERSION" > /dev/null 2>&1 ||
			die "npm install -g deno@$DENO_VERSION failed"
		# Where npm skipped the package's install script, run it: it links the binary.
		deno --version > /dev/null 2>&1 || node "$(npm root -g)/deno/install.cjs" > /dev/null 2>&1
		deno --version | grep -q "^deno $DENO_VERSION " || die "deno $DENO_VERSION not on PATH"
	fi
	local missing=""
	for p in $DEBIAN_PACKAGES; do
		dpkg-query -W -f='${Status}' $p 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
	done
	if test -n "$missing"; then
		test "$(id -u)" = "0" || die "not root; install:$missing"
		apt-get update -qq > /dev/null 2>&1
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing > /dev/null 2>&1 ||
			die "apt-get install$missing failed"
	fi
	cd $dir && deno install --quiet > /dev/null 2>&1 || deno cache main.ts > /dev/null
}

##   test [--junit FILE] [deno test args...]
##     Setup, then the whole test suite (as root: kernel and CNI tests need it).
cmd_test() {
	cmd_setup
	cd $dir
	local junit=""
	if test "$1" = "--junit"; then
		junit="--junit-path=$2"
		shift 2
	fi
	deno test -A --parallel $junit "$@" tests/
}

##   check
##     Format, lint and type checks.
cmd_check() {
	cd $dir
	deno fmt --check && deno lint && deno task check
}

##   binary
##     Compile main.ts into dist/xcluster-cni with the version from git describe.
##     Offline, set DENORT_BIN to a denort binary of the pinned Deno version.
cmd_binary() {
	cd $dir
	tmp=$(mktemp -d)
	local version=$(git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-unknown)
	cp src/version.json $tmp/version.json
	echo "{ \"version\": \"$version\" }" > src/version.json
	mkdir -p dist
	if ! deno compile -A --quiet --output dist/xcluster-cni main.ts > $tmp/compile.log 2>&1; then
		cp $tmp/version.json src/version.json
		cat $tmp/compile.log >&2
		if test -z "$DENORT_BIN"; then
			die "deno compile could not get its runtime (denort $DENO_VERSION); offline, set DENORT_BIN=/path/to/denort"
		fi
		die "deno compile failed (DENORT_BIN=$DENORT_BIN)"
	fi
	cp $tmp/version.json src/version.json
	# A runtime that is not denort (the deno CLI itself, say) compiles but runs as deno.
	timeout 10 dist/xcluster-cni version 2>/dev/null | grep -q "^xcluster-cni $version " ||
		{ rm -f dist/xcluster-cni; die "dist/xcluster-cni does not run as xcluster-cni (is DENORT_BIN a denort $DENO_VERSION?)"; }
	echo "dist/xcluster-cni $version"
}

##   image
##     Build the container image xcluster-cni:<version> (needs a Docker engine).
cmd_image() {
	cd $dir
	local version=$(git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-unknown)
	docker info > /dev/null 2>&1 || die "no Docker engine reachable (docker info failed)"
	docker build --build-arg DENO_VERSION=$DENO_VERSION --build-arg VERSION=$version \
		-t xcluster-cni:$version . || die "docker build failed"
}

##   demo [--check] [--nodes N]
##     Setup, then a whole cluster on this machine in network namespaces (root).
cmd_demo() {
	cmd_setup
	cd $dir
	exec deno run -A main.ts demo "$@"
}

# Get the command
cmd=$1
shift
grep -q "^cmd_$cmd()" $0 || die "Invalid command [$cmd]"

trap "die Interrupted" INT TERM
cmd_$cmd "$@"
status=$?
test -n "$tmp" && rm -rf "$tmp"
exit $status
