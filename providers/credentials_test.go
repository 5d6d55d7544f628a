package providers

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

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
	users, err := loadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
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
		user, err := c.Authorize(tc.username, tc.password)
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
		user, err := c.Authorize(tc.username, tc.password)
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

// An unknown user must cost as much as a wrong password, or the time to answer
// tells which usernames exist: the comparison uses the costliest hash in the file.
func TestCredentialsUnknownUserCost(t *testing.T) {
	strong, err := bcrypt.GenerateFromPassword([]byte("strong-pw"), bcrypt.MinCost+2)
	if err != nil {
		t.Fatal(err)
	}
	path := writeUsers(t, "weak:"+hashPassword(t, "weak-pw")+"\nstrong:"+string(strong)+"\nweak2:"+hashPassword(t, "weak-pw")+"\n")
	p, err := New(t.Context(), Config{Kind: "credentials", UsersFile: path}, offline, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	c := p.(*Credentials)
	if cost, err := bcrypt.Cost(c.dummyHash); err != nil || cost != bcrypt.MinCost+2 {
		t.Errorf("unknown users are compared at cost %d (%v), want the file's highest, %d", cost, err, bcrypt.MinCost+2)
	}
	// The password matching the hash that unknown users are compared with is still refused.
	if user, err := c.Authorize("mallory", "strong-pw"); err != ErrCredentials || user != nil {
		t.Errorf("Authorize(unknown user, the costliest user's password) = %v, %v; want ErrCredentials", user, err)
	}
}
