package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testenv"
	"github.com/authgate/caddy-authgate/internal/testredis"
)

// caddyBin is the ./cmd/caddy binary TestMain built for the tests.
var caddyBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "authgate-cluster-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster: temporary directory:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	root, err := testenv.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		return 1
	}
	caddyBin = filepath.Join(dir, "caddy")
	cmd := exec.Command("go", "build", "-o", caddyBin, "./cmd/caddy")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "cluster: building ./cmd/caddy: %v\n%s", err, out)
		return 1
	}
	defer testredis.StopSharedCluster() // started by the first test that needs it
	return m.Run()
}
