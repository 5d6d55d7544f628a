// Command mkcookie prints a session token that authgate accepts, for the load
// benchmark (bench/run.sh): the claims a credentials sign-in would write, encoded
// with the session package for the realm's secret and cookie name.
//
//	go run ./bench/mkcookie -secret S [-name authgate.session-token] [-format authjs|next-auth-v4] [-email alice@example.com] [-n 1]
//
// With -n, it prints n tokens, one a line, for n users (alice, user2, user3, …; the
// email keeps -email's domain), so a load test can stand for many sessions.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/authgate/caddy-authgate/session"
)

func main() {
	secret := flag.String("secret", "", "the realm's secret (required)")
	name := flag.String("name", "authgate.session-token", "cookie name, the Auth.js format's salt (without the __Secure- prefix on http)")
	format := flag.String("format", "authjs", "token format: authjs (Auth.js v5) or next-auth-v4")
	email := flag.String("email", "alice@example.com", "the user's email claim")
	maxAge := flag.Duration("max-age", 30*24*time.Hour, "token lifetime")
	n := flag.Int("n", 1, "how many tokens (distinct users) to print")
	flag.Parse()
	if *secret == "" || *n < 1 {
		fmt.Fprintln(os.Stderr, "mkcookie: -secret is required, -n at least 1")
		os.Exit(2)
	}

	f, err := parseFormat(*format)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkcookie:", err)
		os.Exit(2)
	}
	codec, err := session.NewCodec([]string{*secret}, *name, f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkcookie:", err)
		os.Exit(1)
	}
	_, domain, _ := strings.Cut(*email, "@")
	out := bufio.NewWriter(os.Stdout)
	now := time.Now()
	for i := range *n {
		sub, name, mail := "alice", "Alice Example", *email
		if i > 0 {
			sub = fmt.Sprintf("user%d", i+1)
			name, mail = fmt.Sprintf("User %d", i+1), sub+"@"+domain
		}
		// iat = now, so the guard does not renew the token (update_age) on every request.
		token, err := codec.Encode(map[string]any{
			"sub":     sub,
			"name":    name,
			"email":   mail,
			"picture": nil,
		}, *maxAge, now)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mkcookie:", err)
			os.Exit(1)
		}
		fmt.Fprintln(out, token)
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "mkcookie:", err)
		os.Exit(1)
	}
}

func parseFormat(s string) (session.Format, error) {
	switch s {
	case "authjs":
		return session.FormatAuthJS, nil
	case "next-auth-v4":
		return session.FormatNextAuthV4, nil
	}
	return 0, fmt.Errorf("unknown -format %q: want authjs or next-auth-v4", s)
}
