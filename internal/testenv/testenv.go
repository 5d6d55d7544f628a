// Package testenv holds what the project's tests share about their
// environment: the repository root, the CI rule that a missing server fails
// rather than skips, Node.js, and child processes that die with the test.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RepoRoot walks up from the working directory to the directory holding
// go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Unavailable reports that something a test needs (a server, a tool, a
// package) is missing or does not start. When the CI environment variable is
// "true" it fails the test, since on CI a skip would hide a broken setup;
// otherwise it skips the test, saying that `make test` installs what is
// missing. Name what is missing in the message.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s", msg)
		return
	}
	t.Skipf("%s; `make test` installs it", msg)
}

// Node finds node on PATH and the repository's testdata/node/node_modules,
// and checks that each of packages (e.g. "oidc-provider", "@auth/core") is
// installed there. What is missing is Unavailable.
func Node(t testing.TB, packages ...string) (node, nodeModules string) {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	node, err = exec.LookPath("node")
	if err != nil {
		Unavailable(t, "node not found: %v", err)
	}
	nodeModules = filepath.Join(root, "testdata", "node", "node_modules")
	for _, pkg := range packages {
		if _, err := os.Stat(filepath.Join(nodeModules, pkg, "package.json")); err != nil {
			Unavailable(t, "%s is not installed in testdata/node: %v", pkg, err)
		}
	}
	return node, nodeModules
}
