package testsite

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// User is a user of the credentials provider.
type User struct {
	Login, Password, Name, Email string
}

// UsersFile writes a users file for the credentials provider, in a temporary
// directory of the test, and returns its path. Passwords are hashed with
// bcrypt's lowest cost, 4, so that sign-in stays fast.
func UsersFile(t testing.TB, users ...User) string {
	t.Helper()
	var b strings.Builder
	for _, u := range users {
		hash, err := bcrypt.GenerateFromPassword([]byte(u.Password), 4)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s:%s:%s\n", u.Login, hash, u.Name, u.Email)
	}
	path := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// CredentialsProvider is the Caddyfile block of a realm's credentials provider
// reading the users file at path, indented for the authgate global option.
func CredentialsProvider(path string) string {
	return "\t\tprovider credentials {\n\t\t\tusers_file " + path + "\n\t\t}\n"
}
