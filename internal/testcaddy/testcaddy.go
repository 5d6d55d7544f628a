// Package testcaddy runs Caddy with authgate in the test process, from a
// Caddyfile, with its admin API off (StartAdmin: on a loopback port), its
// storage in a temporary directory and its log captured for assertions.
package testcaddy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile" // Caddyfile adapter
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/authgate/caddy-authgate" // the module under test
	"github.com/authgate/caddy-authgate/internal/testenv"
	"github.com/authgate/caddy-authgate/internal/testsite"
)

// one Caddy instance per process: tests that start one must not run in parallel.
var mu sync.Mutex

// Server is a running Caddy.
type Server struct {
	// AdminURL is the admin API's address (StartAdmin), "" when it is off.
	AdminURL string

	logFile  string
	dataDir  string
	admin    string // the admin API's listen address, "" for off
	stopOnce sync.Once
	stopErr  error
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	return testenv.FreePort(t)
}

// Adapt turns a Caddyfile into Caddy's JSON, failing the test on error.
func Adapt(t testing.TB, caddyfile string) []byte {
	t.Helper()
	js, err := AdaptErr(caddyfile)
	if err != nil {
		t.Fatalf("adapting the Caddyfile: %v\n%s", err, caddyfile)
	}
	return js
}

// AdaptErr turns a Caddyfile into Caddy's JSON.
func AdaptErr(caddyfile string) ([]byte, error) {
	adapter := caddyconfig.GetAdapter("caddyfile")
	js, _, err := adapter.Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	return js, err
}

// Validate adapts and provisions the Caddyfile's config without starting it,
// as `caddy validate` does.
func Validate(caddyfile string) error {
	js, err := AdaptErr(caddyfile)
	if err != nil {
		return err
	}
	var cfg caddy.Config
	if err := json.Unmarshal(js, &cfg); err != nil {
		return err
	}
	return caddy.Validate(&cfg)
}

// Start runs the Caddyfile's config until the test ends.
func Start(t testing.TB, caddyfile string) *Server {
	t.Helper()
	return start(t, caddyfile, "")
}

// StartAdmin is Start with Caddy's admin API on a loopback port, at
// AdminURL: for tests that read its /metrics.
func StartAdmin(t testing.TB, caddyfile string) *Server {
	t.Helper()
	return start(t, caddyfile, "127.0.0.1:"+strconv.Itoa(FreePort(t)))
}

func start(t testing.TB, caddyfile, admin string) *Server {
	t.Helper()
	dir := t.TempDir()
	s := &Server{logFile: filepath.Join(dir, "caddy.log"), dataDir: filepath.Join(dir, "data"), admin: admin}
	if admin != "" {
		s.AdminURL = "http://" + admin
	}
	js := s.config(t, caddyfile)
	mu.Lock()
	if err := caddy.Load(js, true); err != nil {
		mu.Unlock()
		t.Fatalf("starting Caddy: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stopping Caddy: %v", err)
		}
		if t.Failed() {
			t.Logf("Caddy log:\n%s", s.Logs())
		}
	})
	return s
}

// Reload loads another config into the running Caddy, as `caddy reload` does
// (force: even when it is the same config), with the same log and data directory.
func (s *Server) Reload(t testing.TB, caddyfile string, force bool) {
	t.Helper()
	if err := caddy.Load(s.config(t, caddyfile), force); err != nil {
		t.Fatalf("reloading Caddy: %v", err)
	}
}

// config adapts the Caddyfile, with the admin endpoint of s (off unless
// StartAdmin), the data directory
// and the log file of s.
func (s *Server) config(t testing.TB, caddyfile string) []byte {
	t.Helper()
	js := Adapt(t, caddyfile)
	var cfg map[string]any
	if err := json.Unmarshal(js, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["admin"] = map[string]any{"disabled": true, "config": map[string]any{"persist": false}}
	if s.admin != "" {
		cfg["admin"] = map[string]any{"listen": s.admin, "config": map[string]any{"persist": false}}
	}
	cfg["storage"] = map[string]any{"module": "file_system", "root": s.dataDir}
	cfg["logging"] = map[string]any{"logs": map[string]any{"default": map[string]any{
		"level":   "DEBUG",
		"writer":  map[string]any{"output": "file", "filename": s.logFile},
		"encoder": map[string]any{"format": "json"},
	}}}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// Stop stops Caddy before the test ends, so that the test can start another
// one (a restart: Start again, with the same Caddyfile). Stopping unloads the
// config, which closes the realms' stores. It is idempotent; Start also calls
// it with t.Cleanup.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		defer mu.Unlock()
		s.stopErr = caddy.Stop()
	})
	return s.stopErr
}

// Logs returns what Caddy logged so far.
func (s *Server) Logs() string {
	b, _ := os.ReadFile(s.logFile)
	return string(b)
}

// LogContains reports whether some log line contains every one of the parts.
func (s *Server) LogContains(parts ...string) bool {
	return s.LogCount(parts...) > 0
}

// LogCount is the number of log lines that contain every one of the parts.
func (s *Server) LogCount(parts ...string) int {
	return testsite.LogCount(s.Logs(), parts...)
}
