package providers

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
)

func hashPassword(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func writeUsers(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// usersFile lists alice (hash only), bob (name and email) and carol (a
// base64-encoded hash, as older `caddy hash-password` printed it), among
// comments and blank lines.
func usersFile(t *testing.T) (path, aliceHash, carolHash string) {
	t.Helper()
	aliceHash, carolHash = hashPassword(t, "alice-pw"), hashPassword(t, "carol-pw")
	path = writeUsers(t, "# authgate users\n\n"+
		"alice:"+aliceHash+"\n"+
		"  \t\n"+
		"  bob:"+hashPassword(t, "bob-pw")+":Bob Example:bob@example.com  \n"+
		"   # carol's hash is base64-encoded\n"+
		"carol:"+base64.StdEncoding.EncodeToString([]byte(carolHash))+":Carol\n")
	return path, aliceHash, carolHash
}

func TestLoadUsers(t *testing.T) {
	path, aliceHash, carolHash := usersFile(t)
	table, err := loadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	users := table.users
	if len(users) != 3 {
		t.Fatalf("%d users, want alice, bob and carol: %v", len(users), users)
	}
	if u := users["alice"]; string(u.hash) != aliceHash || u.name != "" || u.email != "" {
		t.Errorf("alice = %+v", u)
	}
	if u := users["bob"]; u.name != "Bob Example" || u.email != "bob@example.com" {
		t.Errorf("bob = %+v, want name and email from the line", u)
	}
	if u := users["carol"]; string(u.hash) != carolHash || u.name != "Carol" || u.email != "" {
		t.Errorf("carol = %+v, want the decoded hash", u)
	}
}

func TestLoadUsersErrors(t *testing.T) {
	h := hashPassword(t, "pw")
	for _, tc := range []struct {
		name, content string
		want          []string // besides the file name
	}{
		{"username only", "# users\nalice\n", []string{":2:", "username:bcrypt-hash"}},
		{"empty username", "\n\n:" + h + "\n", []string{":3:"}},
		{"not a hash", "alice:" + h + "\nbob:secret\n", []string{":2:", "hash"}},
		{"truncated hash", "alice:" + h[:30] + "\n", []string{":1:", "hash"}},
		{"base64 of no hash", "alice:" + base64.StdEncoding.EncodeToString([]byte("plain")) + "\n", []string{":1:", "hash"}},
		{"empty hash", "alice:\n", []string{":1:", "hash"}},
		{"duplicate user", "alice:" + h + "\n# again\nalice:" + h + ":Alice\n", []string{":3:", "duplicate", `"alice"`}},
		{"empty file", "", []string{"no users"}},
		{"comments only", "# nobody yet\n\n", []string{"no users"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeUsers(t, tc.content)
			_, err := loadUsers(path)
			errContains(t, err, append([]string{path}, tc.want...)...)
		})
	}
	_, err := loadUsers(filepath.Join(t.TempDir(), "missing"))
	errContains(t, err, "users_file", "missing")
}

func TestCredentialsAuthorize(t *testing.T) {
	path, _, _ := usersFile(t)
	p, err := New(t.Context(), Config{Kind: "credentials", UsersFile: path}, offline, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	c := p.(*Credentials)
	if c.ID() != "credentials" || c.Name() != "Credentials" || c.Type() != TypeCredentials {
		t.Errorf("id %q, name %q, type %q", c.ID(), c.Name(), c.Type())
	}
	for _, tc := range []struct {
		username, password string
		want               map[string]any
	}{
		{"alice", "alice-pw", map[string]any{"id": "alice", "name": "alice", "email": ""}},
		{"bob", "bob-pw", map[string]any{"id": "bob", "name": "Bob Example", "email": "bob@example.com"}},
		{"carol", "carol-pw", map[string]any{"id": "carol", "name": "Carol", "email": ""}},
	} {
		user, err := c.Authorize(t.Context(), tc.username, tc.password)
		if err != nil || !reflect.DeepEqual(user, tc.want) {
			t.Errorf("Authorize(%q, right password) = %v, %v; want %v", tc.username, user, err, tc.want)
		}
	}
	for _, tc := range []struct{ username, password string }{
		{"alice", "wrong"},
		{"alice", ""},
		{"alice", "bob-pw"}, // another user's password
		{"Alice", "alice-pw"},
		{"mallory", "alice-pw"}, // unknown user: the same error as a wrong password
		{"", ""},
	} {
		user, err := c.Authorize(t.Context(), tc.username, tc.password)
		if !errors.Is(err, ErrCredentials) || err != ErrCredentials || user != nil {
			t.Errorf("Authorize(%q, %q) = %v, %v; want nil, ErrCredentials", tc.username, tc.password, user, err)
		}
	}
}

func TestCredentialsConfig(t *testing.T) {
	_, err := New(t.Context(), Config{Kind: "credentials"}, offline, zap.NewNop())
	errContains(t, err, `"credentials"`, "missing users_file")

	path := writeUsers(t, "alice:not-a-hash\n")
	_, err = New(t.Context(), Config{Kind: "credentials", ID: "staff", UsersFile: path}, offline, zap.NewNop())
	errContains(t, err, `"staff"`, path+":1:")

	path, _, _ = usersFile(t)
	p, err := New(t.Context(), Config{Kind: "credentials", ID: "staff", Name: "Staff login", UsersFile: path}, offline, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if p.ID() != "staff" || p.Name() != "Staff login" || p.Type() != TypeCredentials {
		t.Errorf("id %q, name %q, type %q", p.ID(), p.Name(), p.Type())
	}
}

// costHash is a hash of password at cost.
func costHash(t *testing.T, password string, cost int) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// An unknown user must cost what a known user's wrong password costs, or the
// time to answer tells which usernames exist: whatever the mix of costs in the
// file, an unknown username is compared with one of the file's hashes, the
// same one at every try, each cost as often as the file has it.
func TestCredentialsUnknownUserCost(t *testing.T) {
	var lines strings.Builder
	for i := range 6 { // cost 4 for a third of the users, cost 5 for two thirds
		fmt.Fprintf(&lines, "user%d:%s\n", i, costHash(t, "pw", bcrypt.MinCost+min(i%3, 1)))
	}
	p, err := New(t.Context(), Config{Kind: "credentials", UsersFile: writeUsers(t, lines.String())}, offline, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	c := p.(*Credentials)
	table := c.users.current()
	inFile := map[string]bool{}
	for _, u := range table.users {
		inFile[string(u.hash)] = true
	}
	costs := map[int]int{}
	const names = 3000
	for i := range names {
		name := fmt.Sprintf("unknown-%d", i)
		h := table.decoy(name)
		if !inFile[string(h)] {
			t.Fatalf("unknown user %q is compared with a hash that is not in the file", name)
		}
		if again := table.decoy(name); string(again) != string(h) {
			t.Fatalf("unknown user %q is compared with another hash at another try", name)
		}
		cost, _ := bcrypt.Cost(h)
		costs[cost]++
	}
	// Two thirds of the file's hashes have cost 5: about two thirds of
	// unknown users do too (the bounds are 8 standard deviations wide).
	if n := costs[bcrypt.MinCost+1]; n < names*2/3-200 || n > names*2/3+200 {
		t.Errorf("%d of %d unknown users compared at cost 5, want about two thirds (%v)", n, names, costs)
	}

	// Another instance with the file chooses alike: timing a name at two
	// instances behind one load balancer tells nothing either.
	p2, err := New(t.Context(), Config{Kind: "credentials", ID: "again", UsersFile: c.users.path}, offline, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if h1, h2 := table.decoy("mallory"), p2.(*Credentials).users.current().decoy("mallory"); string(h1) != string(h2) {
		t.Error("two providers reading one file compare an unknown user with different hashes")
	}

	// The password matching the hash an unknown user is compared with is still refused.
	if user, err := c.Authorize(t.Context(), "mallory", "pw"); err != ErrCredentials || user != nil {
		t.Errorf("Authorize(unknown user, the decoy hash's password) = %v, %v; want ErrCredentials", user, err)
	}
}

// TestCredentialsSubject: two credentials providers' users never share a sub;
// the default provider's keep their username.
func TestCredentialsSubject(t *testing.T) {
	path, _, _ := usersFile(t)
	subs := map[string]string{}
	for _, id := range []string{"", "partners"} {
		p, err := New(t.Context(), Config{Kind: "credentials", ID: id, UsersFile: path}, offline, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		ident, err := p.(*Credentials).SignIn(t.Context(), map[string]string{"username": "alice", "password": "alice-pw"})
		if err != nil {
			t.Fatal(err)
		}
		if ident.Account["provider_account_id"] != "alice" || ident.Account["provider"] != p.ID() || ident.Account["type"] != TypeCredentials {
			t.Errorf("%s: account = %v, want alice's at %s", p.ID(), ident.Account, p.ID())
		}
		subs[p.ID()], _ = ident.User["id"].(string)
	}
	if subs["credentials"] != "alice" || subs["partners"] != "partners:alice" {
		t.Errorf("alice's subs are %v, want alice (default provider) and partners:alice", subs)
	}
	def := &Credentials{id: DefaultCredentialsID}
	for id, want := range map[string]string{"bob": "bob", "partners:alice": "credentials:partners:alice", "": ""} {
		if got := def.Subject(id); got != want {
			t.Errorf("default provider: Subject(%q) = %q, want %q", id, got, want)
		}
	}
}

// TestCredentialsReload: a changed users file takes effect at the next
// sign-in after the file was last looked at a second ago; one that cannot be
// read or is not valid keeps the users it listed.
func TestCredentialsReload(t *testing.T) {
	path := writeUsers(t, "alice:"+hashPassword(t, "old-pw")+"\n")
	p, err := New(t.Context(), Config{Kind: "credentials", UsersFile: path}, offline, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	c := p.(*Credentials)
	signIn := func(user, pw string) error {
		t.Helper()
		_, err := c.Authorize(t.Context(), user, pw)
		return err
	}
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	aWhileAgo := func() { c.users.checked.Store(time.Now().Add(-recheck).UnixNano()) }

	write("alice:" + hashPassword(t, "new-pw") + "\nbob:" + hashPassword(t, "bob-pw") + "\n")
	// Looked at just now (at New): not again yet.
	if err := signIn("alice", "old-pw"); err != nil {
		t.Fatalf("right after New, the file was looked at again: %v", err)
	}
	aWhileAgo()
	if err := signIn("alice", "new-pw"); err != nil {
		t.Fatalf("the changed file did not take effect: %v", err)
	}
	if err := signIn("bob", "bob-pw"); err != nil {
		t.Fatalf("a user added to the file cannot sign in: %v", err)
	}
	if err := signIn("alice", "old-pw"); err != ErrCredentials {
		t.Fatalf("the old password still works: %v", err)
	}

	write("alice:not-a-hash\n")
	aWhileAgo()
	if err := signIn("bob", "bob-pw"); err != nil {
		t.Fatalf("an invalid file replaced the users: %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	aWhileAgo()
	if err := signIn("bob", "bob-pw"); err != nil {
		t.Fatalf("a removed file replaced the users: %v", err)
	}
	write("carol:" + hashPassword(t, "carol-pw") + "\n")
	aWhileAgo()
	if err := signIn("carol", "carol-pw"); err != nil || signIn("bob", "bob-pw") != ErrCredentials {
		t.Fatalf("the file written again did not take effect: %v", err)
	}
}

// TestPasswordChecksBounded saturates a checker of two slots: no more than two
// comparisons ever run at once, and the excess gives up with ErrBusy instead
// of waiting its turn.
func TestPasswordChecksBounded(t *testing.T) {
	const slots, clients = 2, 12
	var running, most atomic.Int32
	release := make(chan struct{})
	h := newHashChecker(slots, 20*time.Millisecond, func(_, _ []byte) error {
		n := running.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		<-release
		running.Add(-1)
		return bcrypt.ErrMismatchedHashAndPassword
	})
	p := &Credentials{id: "credentials", checks: h, users: &liveUsers{}}
	path := writeUsers(t, "alice:"+hashPassword(t, "pw")+"\n")
	table, err := loadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	p.users.table.Store(table)
	p.users.checked.Store(time.Now().Add(time.Hour).UnixNano()) // never looked at again

	errs := make(chan error, clients)
	for i := range clients {
		go func() {
			_, err := p.Authorize(t.Context(), fmt.Sprintf("unknown-%d", i), "pw")
			errs <- err
		}()
	}
	// The comparisons that got a slot hold it until released, so all the
	// others must give up.
	for i := range clients - slots {
		select {
		case err := <-errs:
			if err != ErrBusy {
				t.Fatalf("a check beyond the bound answered %v, want ErrBusy", err)
			}
		case <-time.After(10 * time.Second): // a deadline for a broken bound, not a timing check
			t.Fatalf("%d of %d checks beyond the bound gave up; the others wait for a slot", i, clients-slots)
		}
	}
	close(release)
	for range slots {
		if err := <-errs; err != ErrCredentials {
			t.Fatalf("a check within the bound answered %v, want ErrCredentials", err)
		}
	}
	if n := most.Load(); n != slots {
		t.Errorf("%d comparisons ran at once, want at most (and here exactly) %d", n, slots)
	}
}
