// Package testredis runs a real redis-server on loopback for tests, without
// persistence, in a temporary directory.
//
// redis-server comes from the Debian package redis-server (`make test`
// installs it). When it is missing or does not start, the test fails when the
// CI environment variable is "true" and is skipped otherwise.
package testredis

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testenv"
)

// readyTimeout bounds how long starting waits for the server to answer PING.
const readyTimeout = 10 * time.Second

// Server is a redis-server process on a fixed loopback port, which Stop and
// Start can take down and bring back (for "Redis went away" tests).
type Server struct {
	// Addr is host:port, the same across restarts.
	Addr string

	t       testing.TB
	bin     string
	dir     string
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has exited
	restart int
}

// Start starts a server and returns its address and a function that stops
// it (Start also stops it with t.Cleanup).
func Start(t testing.TB) (addr string, stop func()) {
	t.Helper()
	s := NewServer(t)
	return s.Addr, s.Stop
}

// NewServer starts a server on a free port and stops it with t.Cleanup.
func NewServer(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		testenv.Unavailable(t, "testredis: redis-server not found: %v", err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(s.Stop)
	// Another process may take the free port before the server binds it: try
	// a few.
	for try := 1; ; try++ {
		s.Addr = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
		err := s.start()
		if err == nil {
			return s
		}
		if try == 3 {
			testenv.Unavailable(t, "testredis: redis-server: %v", err)
		}
	}
}

// Start starts the server again, on the same port, after Stop; the data is
// gone. It does nothing while the server runs.
func (s *Server) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("testredis: restarting: %v", err)
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	s.restart++
	logPath := filepath.Join(s.dir, fmt.Sprintf("redis-%d.log", s.restart))
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(s.bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", s.dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	testenv.SetPdeathsig(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()

	deadline := time.Now().Add(readyTimeout)
	for {
		if ping(s.Addr) == nil {
			s.cmd, s.exited = cmd, exited
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited before it was ready:\n%s", tail(logPath))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server did not answer PING within %v:\n%s", readyTimeout, tail(logPath))
		}
	}
}

// ping checks that a Redis server answers at addr.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Stop stops the server and waits for it to exit, so that its port refuses
// connections when Stop returns. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	testenv.Terminate(s.cmd.Process, s.exited, 5*time.Second)
	s.cmd = nil
}
