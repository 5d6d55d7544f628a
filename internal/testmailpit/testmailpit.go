// Package testmailpit runs mailpit — a real SMTP server that keeps what it
// receives and shows it through a REST API — on loopback for tests of the
// email sign-in flow.
//
// mailpit is a Go tool of this module (`tool github.com/axllent/mailpit` in
// go.mod): `go tool -n mailpit`, run at the repository root, builds it into
// the build cache when needed and prints its path, and the test runs that
// binary directly, so that stopping it stops mailpit itself rather than a `go`
// process in front of it. When it cannot be built or does not start, the test
// fails when the CI environment variable is "true" and is skipped otherwise.
package testmailpit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testenv"
)

const (
	// buildTimeout bounds `go tool -n mailpit`: the first build takes ~35s.
	buildTimeout = 3 * time.Minute
	// readyTimeout bounds how long Start waits for both ports to answer.
	readyTimeout = 20 * time.Second
)

// Mailpit is a running mailpit.
type Mailpit struct {
	// SMTP is the SMTP server's host:port (plain SMTP, any or no credentials
	// accepted, AUTH PLAIN allowed without TLS).
	SMTP string
	// API is the base URL of the web UI and REST API, http://127.0.0.1:PORT.
	API string

	cmd    *exec.Cmd
	exited chan struct{}
	out    *testenv.SyncBuffer
	once   sync.Once
	client *http.Client
}

// Address is a mailbox of a message.
type Address struct {
	Name    string
	Address string
}

// Summary is a message in the list GET /api/v1/messages returns.
type Summary struct {
	ID      string
	From    *Address
	To      []Address
	Subject string
}

// Message is a whole message, as GET /api/v1/message/{ID} returns it.
type Message struct {
	ID       string
	From     *Address
	To       []Address
	Subject  string
	Text     string
	HTML     string
	Username string // the SMTP AUTH username the sender used, if any
}

// Start starts mailpit on free loopback ports, waits until its SMTP port and
// API answer, and stops it with t.Cleanup.
func Start(t testing.TB) *Mailpit {
	t.Helper()
	bin, err := binary()
	if err != nil {
		testenv.Unavailable(t, "testmailpit: mailpit (a Go tool of this module): %v", err)
	}
	dir := t.TempDir()
	// Another process may take a free port before mailpit binds it: try a few.
	for try := 1; ; try++ {
		m, err := start(bin, dir, try)
		if err == nil {
			t.Cleanup(func() {
				m.Stop()
				if t.Failed() {
					t.Logf("testmailpit: mailpit output (last lines):\n%s", m.Output())
				}
			})
			return m
		}
		if try == 3 {
			testenv.Unavailable(t, "testmailpit: mailpit (a Go tool of this module): %v", err)
		}
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds mailpit, once per process, and returns the path of the binary.
func binary() (string, error) {
	binOnce.Do(func() {
		root, err := testenv.RepoRoot()
		if err != nil {
			binErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, "go", "tool", "-n", "mailpit")
		cmd.Dir = root
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			binErr = fmt.Errorf("go tool -n mailpit: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
			return
		}
		binPath = strings.TrimSpace(stdout.String())
		if fi, err := os.Stat(binPath); err != nil || fi.IsDir() {
			binErr = fmt.Errorf("go tool -n mailpit printed %q, which is not a binary (%v)", binPath, err)
		}
	})
	return binPath, binErr
}

func start(bin, dir string, try int) (*Mailpit, error) {
	smtpPort, apiPort, err := freePorts()
	if err != nil {
		return nil, err
	}
	m := &Mailpit{
		SMTP:   net.JoinHostPort("127.0.0.1", strconv.Itoa(smtpPort)),
		API:    "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(apiPort)),
		exited: make(chan struct{}),
		out:    &testenv.SyncBuffer{},
		client: &http.Client{Timeout: 10 * time.Second},
	}
	m.cmd = exec.Command(bin,
		"--smtp", m.SMTP,
		"--listen", strings.TrimPrefix(m.API, "http://"),
		"--smtp-auth-accept-any",
		"--smtp-auth-allow-insecure",
		"--database", filepath.Join(dir, fmt.Sprintf("mailpit-%d.db", try)),
		// Nothing leaves the machine: no update checks, no reverse DNS of
		// clients, no remote CSS or fonts in the web UI.
		"--disable-version-check",
		"--smtp-disable-rdns",
		"--block-remote-css-and-fonts",
	)
	m.cmd.Dir = dir
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	testenv.SetPdeathsig(m.cmd)
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %v", bin, err)
	}
	go func() {
		_ = m.cmd.Wait()
		close(m.exited)
	}()

	deadline := time.Now().Add(readyTimeout)
	for {
		if m.ready() {
			return m, nil
		}
		select {
		case <-m.exited:
			return nil, fmt.Errorf("mailpit exited before it was ready:\n%s", m.Output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.Stop()
			return nil, fmt.Errorf("mailpit did not answer within %v:\n%s", readyTimeout, m.Output())
		}
	}
}

// ready reports whether the SMTP server greets and the API answers.
func (m *Mailpit) ready() bool {
	c, err := net.DialTimeout("tcp", m.SMTP, time.Second)
	if err != nil {
		return false
	}
	_ = c.SetDeadline(time.Now().Add(time.Second))
	greeting := make([]byte, 4)
	_, err = io.ReadFull(c, greeting)
	c.Close()
	if err != nil || string(greeting[:3]) != "220" {
		return false
	}
	resp, err := m.client.Get(m.API + "/api/v1/messages")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func freePorts() (int, int, error) {
	var ports []int
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, fmt.Errorf("finding a free port: %v", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports[0], ports[1], nil
}

// Stop stops mailpit and waits for it to exit. It is idempotent; Start also
// calls it with t.Cleanup.
func (m *Mailpit) Stop() {
	m.once.Do(func() {
		testenv.Terminate(m.cmd.Process, m.exited, 5*time.Second)
	})
}

// Output is what mailpit printed so far (the last 8 KB).
func (m *Mailpit) Output() string {
	s := m.out.String()
	if len(s) > 8000 {
		s = "…" + s[len(s)-8000:]
	}
	return s
}

// MailerURL is the URL of authgate's `mailer` option for this server, with
// the given SMTP credentials (none when user is empty).
func (m *Mailpit) MailerURL(user, password string) string {
	u := url.URL{Scheme: "smtp", Host: m.SMTP, RawQuery: "tls=none"}
	if user != "" {
		u.User = url.UserPassword(user, password)
	}
	return u.String()
}

// Messages lists every message received, newest first.
func (m *Mailpit) Messages(t testing.TB) []Summary {
	t.Helper()
	var list struct {
		Total    int
		Messages []Summary
	}
	m.getJSON(t, "/api/v1/messages?limit=1000", &list)
	if len(list.Messages) != list.Total {
		t.Fatalf("testmailpit: the API listed %d of %d messages", len(list.Messages), list.Total)
	}
	return list.Messages
}

// MessagesTo lists the messages received for address (compared
// case-insensitively), newest first.
func (m *Mailpit) MessagesTo(t testing.TB, address string) []Summary {
	t.Helper()
	var out []Summary
	for _, s := range m.Messages(t) {
		for _, to := range s.To {
			if strings.EqualFold(to.Address, address) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// Message returns the whole message with the ID.
func (m *Mailpit) Message(t testing.TB, id string) Message {
	t.Helper()
	var msg Message
	m.getJSON(t, "/api/v1/message/"+url.PathEscape(id), &msg)
	return msg
}

// Latest returns the newest message received for address, failing the test
// when there is none.
func (m *Mailpit) Latest(t testing.TB, address string) Message {
	t.Helper()
	list := m.MessagesTo(t, address)
	if len(list) == 0 {
		t.Fatalf("testmailpit: no message for %s (all messages: %v)", address, m.Messages(t))
	}
	return m.Message(t, list[0].ID)
}

func (m *Mailpit) getJSON(t testing.TB, path string, v any) {
	t.Helper()
	resp, err := m.client.Get(m.API + path)
	if err != nil {
		t.Fatalf("testmailpit: GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("testmailpit: GET %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("testmailpit: GET %s: %s: %s", path, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("testmailpit: GET %s: %v: %s", path, err, body)
	}
}

// linkPattern is an http(s) URL in a text body: up to white space.
var linkPattern = regexp.MustCompile(`https?://\S+`)

// Link returns the one URL in the text body that starts with prefix (e.g.
// "http://127.0.0.1:1234/.auth/callback/"), failing the test unless there is
// exactly one.
func Link(t testing.TB, text, prefix string) string {
	t.Helper()
	var links []string
	for _, l := range linkPattern.FindAllString(text, -1) {
		if strings.HasPrefix(l, prefix) {
			links = append(links, l)
		}
	}
	if len(links) != 1 {
		t.Fatalf("testmailpit: want one link starting with %s in the text body, found %q in:\n%s", prefix, links, text)
	}
	return links[0]
}
