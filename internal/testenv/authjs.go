package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// AuthJS runs testdata/authjs/codec.mjs, which calls the real @auth/core's
// encode() and decode().
type AuthJS struct{ node, script string }

// NeedAuthJS finds node and @auth/core; without them the test is skipped
// locally and fails on CI (see Unavailable).
func NeedAuthJS(t testing.TB) AuthJS {
	t.Helper()
	node, _ := Node(t, "@auth/core")
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return AuthJS{node: node, script: filepath.Join(root, "testdata", "authjs", "codec.mjs")}
}

// Run runs `node codec.mjs <args…>` (encode|decode secret salt …) and returns its
// trimmed output.
func (a AuthJS) Run(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, a.node, append([]string{a.script}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("node codec.mjs %s: %v: %s", args[0], err, bytes.TrimSpace(stderr.Bytes()))
	}
	return strings.TrimSpace(stdout.String()), nil
}
