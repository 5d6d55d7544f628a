// Package testredis runs real redis-server processes on loopback for tests,
// without persistence, in temporary directories: a single server (Server),
// or a Redis Cluster of three masters and three replicas (Cluster), which a
// test may take masters of down to see a replica promoted.
//
// redis-server and redis-cli come from the Debian package redis-server
// (`make test` installs it). When they are missing or the servers do not
// start, the test fails when the CI environment variable is "true" and is
// skipped otherwise.
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
	proc    *process // nil while stopped
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
	if s.proc != nil {
		return nil
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	s.restart++
	logPath := filepath.Join(s.dir, fmt.Sprintf("redis-%d.log", s.restart))
	p, err := launch(s.bin, s.Addr, logPath, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", s.dir)
	if err != nil {
		return err
	}
	s.proc = p
	return nil
}

// process is a running redis-server.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// launch starts redis-server with args, its output going to logPath, and
// waits until it answers PING at addr.
func launch(bin, addr, logPath string, args ...string) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	testenv.SetPdeathsig(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting redis-server: %v", err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()

	deadline := time.Now().Add(readyTimeout)
	for {
		if ping(addr) == nil {
			return p, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("redis-server exited before it was ready:\n%s", tail(logPath))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.kill()
			return nil, fmt.Errorf("redis-server did not answer PING within %v:\n%s", readyTimeout, tail(logPath))
		}
	}
}

// stop stops the process and waits until it has exited.
func (p *process) stop() { testenv.Terminate(p.cmd.Process, p.exited, 5*time.Second) }

// kill kills the process with SIGKILL, as a crash would, and waits until it
// has exited.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
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
	if s.proc == nil {
		return
	}
	s.proc.stop()
	s.proc = nil
}
