package callbacks

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Origins is a compiled allow-list of redirect origins beyond the base URL's own.
// The nil *Origins allows nothing.
//
// A pattern is either a full origin or, as in oauth2-proxy's whitelist_domains, a
// host pattern without a scheme, which then allows both http and https:
//
//	https://a.example.com:8443   exactly this origin
//	https://*.example.com        any subdomain of example.com, at any depth, over https on port 443
//	http://localhost:*           localhost over http on any port
//	foo.bar                      foo.bar over http (port 80) or https (port 443)
//	.bar.foo                     bar.foo itself and any subdomain of it
//	port.bar:8080                port.bar on port 8080, http or https
//	anyport.bar:*                anyport.bar on any port
//	*.wildcard.bar               any subdomain of wildcard.bar, never wildcard.bar itself
//
// A "*." wildcard never matches the apex domain (use the leading-dot form for that;
// oauth2-proxy's "*." includes the apex, this one deliberately does not) and never a
// sibling that merely ends in the same letters: *.example.com does not match
// evilexample.com. Hosts compare case-insensitively. IP addresses are matched only
// exactly: a dotted IPv4 address, or an IPv6 address in brackets.
type Origins struct {
	patterns []originPattern
}

// hostMatch says how an originPattern's host is compared.
type hostMatch uint8

const (
	matchExact      hostMatch = iota // "foo.bar"
	matchSubdomains                  // "*.foo.bar": strict subdomains only
	matchDomain                      // ".foo.bar": foo.bar and its subdomains
)

// anyPort is originPattern.port for a pattern ending in ":*".
const anyPort = -1

type originPattern struct {
	scheme string // "http", "https", or "" for either
	host   string // canonical form, see canonicalHost
	match  hostMatch
	port   int // the port; 0 for the scheme's default port; anyPort
}

// origin is a URL's (scheme, host, port) triple in canonical form, comparable with ==.
type origin struct {
	scheme string // "http" or "https"
	host   string // canonical form, see canonicalHost
	port   int    // always explicit: 443 for https without a port
}

// CompileOrigins parses allow-list patterns; see Origins for the accepted forms. It
// fails on the first malformed pattern: an empty one, one with a path, query,
// fragment or userinfo, a scheme other than http or https, a bad port, or a host
// with characters outside a-z, 0-9, '.' and '-' (write internationalised names in
// their xn-- form).
func CompileOrigins(patterns []string) (*Origins, error) {
	o := &Origins{patterns: make([]originPattern, 0, len(patterns))}
	for _, p := range patterns {
		op, err := compileOrigin(p)
		if err != nil {
			return nil, fmt.Errorf("allowed origin %q: %v", p, err)
		}
		o.patterns = append(o.patterns, op)
	}
	return o, nil
}

func compileOrigin(p string) (originPattern, error) {
	var op originPattern
	if p == "" {
		return op, errors.New("empty pattern")
	}
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] >= 0x7f {
			return op, errors.New("whitespace, control or non-ASCII character")
		}
	}
	hostport := p
	if scheme, rest, ok := strings.Cut(p, "://"); ok {
		op.scheme = strings.ToLower(scheme)
		if op.scheme != "http" && op.scheme != "https" {
			return op, fmt.Errorf("scheme %q is not http or https", scheme)
		}
		hostport = rest
	}
	if strings.ContainsAny(hostport, "/?#") {
		return op, errors.New("an origin has no path, query or fragment")
	}
	if strings.Contains(hostport, "@") {
		return op, errors.New("an origin has no userinfo")
	}
	host, port, ok := splitHostPort(hostport)
	if !ok {
		return op, errors.New("malformed host or port")
	}
	switch port {
	case "": // the scheme's default port, op.port's zero value
	case "*":
		op.port = anyPort
	default:
		n, ok := parsePort(port)
		if !ok {
			return op, fmt.Errorf("port %q is not a number from 1 to 65535 or *", port)
		}
		op.port = n
	}
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		op.match, host = matchSubdomains, rest
	} else if rest, ok := strings.CutPrefix(host, "."); ok {
		op.match, host = matchDomain, rest
	}
	canon, ok := canonicalHost(host)
	if !ok {
		return op, fmt.Errorf("host %q is not a DNS name (a-z, 0-9, '-', '.'; * only as a whole leftmost label), an IPv4 address or a bracketed IPv6 address", host)
	}
	if op.match != matchExact && !isDNSName(canon) {
		return op, fmt.Errorf("a wildcard needs a DNS name, not the address %q", host)
	}
	op.host = canon
	return op, nil
}

// Allowed reports whether the absolute URL u's origin (scheme, host, port) is in the
// list. A URL with userinfo, a scheme other than http or https, or a host that is
// not a plain DNS name or IP address is never allowed.
func (o *Origins) Allowed(u *url.URL) bool {
	or, ok := originOf(u)
	return ok && o.allows(or)
}

func (o *Origins) allows(or origin) bool {
	if o == nil {
		return false
	}
	for _, p := range o.patterns {
		if p.matches(or) {
			return true
		}
	}
	return false
}

func (p originPattern) matches(or origin) bool {
	if p.scheme != "" && p.scheme != or.scheme {
		return false
	}
	switch p.port {
	case anyPort:
	case 0:
		if or.port != defaultPort(or.scheme) {
			return false
		}
	default:
		if or.port != p.port {
			return false
		}
	}
	switch p.match {
	case matchSubdomains:
		return isSubdomain(or.host, p.host)
	case matchDomain:
		return or.host == p.host || isSubdomain(or.host, p.host)
	default:
		return or.host == p.host
	}
}

// isSubdomain reports whether host is a strict subdomain of domain. The dot before
// domain is what keeps evilexample.com out of example.com's subdomains.
func isSubdomain(host, domain string) bool {
	return len(host) > len(domain) &&
		host[len(host)-len(domain)-1] == '.' &&
		host[len(host)-len(domain):] == domain
}

// SafeRedirect returns the absolute URL to redirect to for target, and whether target
// was accepted as is. base is the site's own absolute http(s) URL; its origin is
// always allowed.
//
// A relative path ("/x?y#z") resolves against base's origin. An absolute http(s) URL
// is accepted when its origin equals base's origin or is allowed (a nil allowed
// allows none). Everything else yields base.String() and false: an empty target,
// scheme-relative and backslash forms (//evil.com, /\evil.com), other schemes
// (javascript:, data:), userinfo, whitespace and control characters, IDN or other
// unusual hosts, and all of these again behind any depth of percent-encoding.
//
// The accepted URL is also refused when, after percent-decoding, its path, query or
// fragment contains "//" (/http://evil.com, /login?next=https://evil.com): the
// redirect itself would stay on the origin, but such a URL exists to hand a second,
// attacker-chosen URL to a page or proxy that follows it, and a genuine callbackUrl
// does not need one.
//
// The raw string is validated before net/url sees it, because browsers read a URL
// more loosely than net/url (they treat '\' as '/' and drop tabs and newlines); the
// returned URL is built only from checked parts and contains nothing a browser would
// read differently.
func SafeRedirect(target string, base *url.URL, allowed *Origins) (string, bool) {
	return safeRedirect(target, base, allowed, false)
}

// safeRedirect is SafeRedirect; anyOrigin accepts every well-formed http(s) origin,
// for targets a rule allowed explicitly (the syntax checks still apply).
func safeRedirect(target string, base *url.URL, allowed *Origins, anyOrigin bool) (string, bool) {
	baseOrigin, ok := originOf(base)
	if !ok || !plainChars(target) {
		return base.String(), false
	}
	var want origin
	var result string
	switch {
	case strings.HasPrefix(target, "/"):
		if !cleanRest(target) {
			return base.String(), false
		}
		want, result = baseOrigin, baseOrigin.String()+target
	case hasPrefixFold(target, "http://") || hasPrefixFold(target, "https://"):
		scheme, rest, _ := strings.Cut(target, "://")
		authority, end := rest, strings.IndexAny(rest, "/?#")
		if end >= 0 {
			authority = rest[:end]
		}
		remainder := rest[len(authority):]
		if !cleanRest(remainder) {
			return base.String(), false
		}
		// Userinfo never gets through: '@' is not a host character, so
		// https://base@evil and https://evil@base both fail here.
		or, ok := parseAuthority(strings.ToLower(scheme), authority)
		if !ok || (or != baseOrigin && !anyOrigin && !allowed.allows(or)) {
			return base.String(), false
		}
		want, result = or, or.String()+remainder
	default:
		return base.String(), false
	}
	// Belt and braces: net/url must read the result as the same origin we checked.
	u, err := url.Parse(result)
	if err != nil {
		return base.String(), false
	}
	if got, ok := originOf(u); !ok || got != want {
		return base.String(), false
	}
	return result, true
}

// plainChars reports whether s is non-empty printable ASCII without space, '"', '<',
// '>' and '`', which a URL never carries unescaped. A browser-produced URL (such as
// window.location.href) always passes: browsers percent-encode everything else.
func plainChars(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c <= ' ' || c >= 0x7f:
			return false
		case c == '"' || c == '<' || c == '>' || c == '`':
			return false
		}
	}
	return true
}

// maxDecodeRounds bounds how many layers of percent-encoding cleanRest peels off;
// anything still encoded after that many rounds is an attack, not a URL.
const maxDecodeRounds = 8

// cleanRest reports whether the part of a URL after its authority — path, query and
// fragment — is clean at every depth of percent-decoding: no "//", no backslash, no
// whitespace (ASCII or Unicode), no control or invisible formatting characters.
// "//" is refused anywhere, not only at the start, because it is how a second URL is
// smuggled into a first (/http://evil.com, /redirect?url=//evil.com).
func cleanRest(s string) bool {
	for round := 0; ; round++ {
		if strings.Contains(s, "//") || !cleanDecoded(s) {
			return false
		}
		next := percentDecode(s)
		if next == s {
			return true
		}
		if round == maxDecodeRounds {
			return false
		}
		s = next
	}
}

// cleanDecoded reports whether s, one decoding layer of a URL, is free of backslashes,
// whitespace, control characters and Unicode format characters (zero-width spaces,
// bidirectional overrides). Bytes that are not valid UTF-8 are left to net/url.
func cleanDecoded(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == 0x7f || c == '\\' {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r != utf8.RuneError && (unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r)) {
			return false
		}
		i += size
	}
	return true
}

// percentDecode replaces every valid %XX escape in s by its byte and leaves anything
// else, including a malformed escape, as it is. Unlike url.PathUnescape it never
// fails, so that a malformed escape cannot hide a well-formed one from cleanRest.
func percentDecode(s string) string {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// originOf returns u's origin, or false when u is not an absolute http(s) URL with a
// plain host and no userinfo.
func originOf(u *url.URL) (origin, bool) {
	if u == nil || u.User != nil {
		return origin{}, false
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return origin{}, false
	}
	return parseAuthority(scheme, u.Host)
}

// parseAuthority parses a URL's host[:port] for the given scheme ("http" or "https").
func parseAuthority(scheme, authority string) (origin, bool) {
	host, port, ok := splitHostPort(authority)
	if !ok {
		return origin{}, false
	}
	canon, ok := canonicalHost(host)
	if !ok {
		return origin{}, false
	}
	or := origin{scheme: scheme, host: canon, port: defaultPort(scheme)}
	if port != "" {
		if or.port, ok = parsePort(port); !ok {
			return origin{}, false
		}
	}
	return or, true
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port". Unlike
// net.SplitHostPort the port is optional, but a colon with nothing after it is
// malformed.
func splitHostPort(hostport string) (host, port string, ok bool) {
	if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return "", "", false
		}
		host, rest := hostport[:end+1], hostport[end+1:]
		if rest == "" {
			return host, "", true
		}
		if rest[0] != ':' || len(rest) == 1 {
			return "", "", false
		}
		return host, rest[1:], true
	}
	host, port, found := strings.Cut(hostport, ":")
	if found && port == "" {
		return "", "", false
	}
	return host, port, host != ""
}

// parsePort parses a decimal port from 1 to 65535.
func parsePort(s string) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 1 && n <= 65535
}

func defaultPort(scheme string) int {
	if scheme == "https" {
		return 443
	}
	return 80
}

// canonicalHost lower-cases a DNS name and checks it is plain ASCII (a-z, 0-9, '-',
// non-empty labels, no trailing dot), or normalises an IP address: dotted-quad IPv4
// exactly as net/netip prints it, IPv6 in brackets without a zone. Anything a
// browser would read as a different host than a string comparison does — octal,
// hex or dotless IPv4, percent-escapes, Unicode that IDNA maps to ASCII — is refused.
func canonicalHost(host string) (string, bool) {
	if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
		addr, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return "", false
		}
		return "[" + addr.String() + "]", true
	}
	host = strings.ToLower(host)
	if host == "" || len(host) > 253 {
		return "", false
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 {
			return "", false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return "", false
			}
		}
	}
	if isDNSName(host) {
		return host, true
	}
	// Browsers read a host whose last label is numeric as an IPv4 address in any of
	// several notations (0x7f.1, 2130706433); accept only the canonical dotted quad,
	// which is what net/netip parses.
	if _, err := netip.ParseAddr(host); err != nil {
		return "", false
	}
	return host, true
}

// isDNSName reports whether the canonical host is a name rather than an IP address:
// its last label does not start with a digit.
func isDNSName(host string) bool {
	last := host[strings.LastIndexByte(host, '.')+1:]
	return last != "" && last[0] != '[' && (last[0] < '0' || last[0] > '9')
}

// String returns the origin as a URL prefix, leaving out the scheme's default port.
func (or origin) String() string {
	if or.port == defaultPort(or.scheme) {
		return or.scheme + "://" + or.host
	}
	return or.scheme + "://" + or.host + ":" + strconv.Itoa(or.port)
}
