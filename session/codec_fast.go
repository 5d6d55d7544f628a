package session

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"unsafe"

	"github.com/go-jose/go-jose/v4"
	josecipher "github.com/go-jose/go-jose/v4/cipher"
)

// The fast path opens the tokens whose protected header is, byte for byte, one
// that Encode writes (@auth/core writes the same bytes: alg, enc, kid in that
// order). Such a header says alg dir, the format's enc and, for FormatAuthJS,
// the kid of one key, so there is nothing in it to parse: the token is opened
// with the AEAD that go-jose itself would use for that enc (its exported
// CBC-HMAC, or crypto/cipher's GCM, which go-jose also uses), on the same
// bytes, with the same checks. Any other header goes to go-jose's full parse,
// unless it cannot name alg dir and the format's enc (see mayBeAccepted).

// errNotFast: the token's header is not one Encode writes.
var errNotFast = errors.New("not a header authgate writes")

var (
	errParts   = errors.New("invalid session token: compact JWE format must have five parts")
	errCrypto  = errors.New("invalid session token: " + jose.ErrCryptoFailure.Error())
	errNoKey   = errors.New("invalid session token: no key decrypts it")
	errHeader  = errors.New("invalid session token: the header does not name alg dir and the format's enc")
	errEncoded = errors.New("invalid session token: bad base64")
)

// protectedHeader is the base64url protected header that Encode writes with kid
// (empty: no kid), as go-jose marshals it.
func protectedHeader(enc jose.ContentEncryption, kid string) string {
	h := `{"alg":"dir","enc":"` + string(enc) + `"`
	if kid != "" {
		h += `,"kid":"` + kid + `"`
	}
	return base64.RawURLEncoding.EncodeToString([]byte(h + "}"))
}

// newAEAD is the AEAD that go-jose opens enc with under key.
func newAEAD(enc jose.ContentEncryption, key []byte) (cipher.AEAD, error) {
	switch enc {
	case jose.A256CBC_HS512:
		return josecipher.NewCBCHMAC(key, aes.NewCipher)
	case jose.A256GCM:
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(block)
	}
	return nil, errors.New("unsupported enc " + string(enc))
}

// compactParts splits a compact JWE as go-jose's ParseEncryptedCompact does.
func compactParts(token string) (parts [5]string, ok bool) {
	for i := range 4 {
		if parts[i], token, ok = strings.Cut(token, "."); !ok {
			return parts, false
		}
	}
	parts[4] = token
	return parts, !strings.Contains(token, ".")
}

// buffers holds the decoded IV, ciphertext and tag of a token, and the
// plaintext, between decodes: the claims are copied out of the plaintext.
var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// openFast opens a token whose header is one Encode writes, returning the
// plaintext (in pooled, valid until it is released) and the index of the key that
// opened it. errNotFast: the header is another; then nothing was decided.
// Every other error is final: go-jose, given the same bytes, would fail too.
func (c *Codec) openFast(token string) (plaintext []byte, keyIndex int, pooled *[]byte, err error) {
	parts, ok := compactParts(token)
	if !ok {
		return nil, -1, nil, errParts
	}
	first := -1
	for i := range c.keys {
		if c.keys[i].header == parts[0] {
			first = i
			break
		}
	}
	if first < 0 {
		return nil, -1, nil, errNotFast
	}

	// IV, then ciphertext and tag side by side: go-jose opens ciphertext||tag.
	bp := buffers.Get().(*[]byte)
	need := len(parts[2]) + len(parts[3]) + len(parts[4]) // ≥ the decoded size, with room for the CBC plaintext
	if cap(*bp) < 2*need {
		*bp = make([]byte, 0, 2*need)
	}
	buf := (*bp)[:cap(*bp)]
	n, err := decodeInto(buf, parts[2])
	if err != nil {
		releaseBuffer(bp)
		return nil, -1, nil, errEncoded
	}
	iv := buf[:n:n]
	rest := buf[n:]
	nct, err := decodeInto(rest, parts[3])
	if err != nil {
		releaseBuffer(bp)
		return nil, -1, nil, errEncoded
	}
	ntag, err := decodeInto(rest[nct:], parts[4])
	if err != nil {
		releaseBuffer(bp)
		return nil, -1, nil, errEncoded
	}
	sealed := rest[: nct+ntag : nct+ntag]
	out := rest[nct+ntag : nct+ntag]

	k := &c.keys[first]
	// go-jose's aeadContentCipher.decrypt checks exactly these lengths.
	if len(iv) != k.aead.NonceSize() || ntag < c.tagSize {
		releaseBuffer(bp)
		if k.kid == "" {
			return nil, -1, nil, errNoKey
		}
		return nil, -1, nil, errCrypto
	}
	if k.kid != "" {
		// The kid names this key: it is final, as in decrypt.
		if plaintext, err = k.aead.Open(out, iv, sealed, k.headerBytes); err != nil {
			releaseBuffer(bp)
			return nil, -1, nil, errCrypto
		}
		return plaintext, first, bp, nil
	}
	// No kid (FormatNextAuthV4): every key with this header, in order.
	for i := first; i < len(c.keys); i++ {
		if c.keys[i].header != parts[0] {
			continue
		}
		if plaintext, err = c.keys[i].aead.Open(out, iv, sealed, c.keys[i].headerBytes); err == nil {
			return plaintext, i, bp, nil
		}
	}
	releaseBuffer(bp)
	return nil, -1, nil, errNoKey
}

// releaseBuffer returns a buffer of openFast's to the pool (nil: none).
func releaseBuffer(bp *[]byte) {
	if bp != nil {
		buffers.Put(bp)
	}
}

// decodeInto decodes base64url segment s into dst as go-jose does
// (base64.RawURLEncoding, which also skips \r and \n).
func decodeInto(dst []byte, s string) (int, error) {
	if base64.RawURLEncoding.DecodedLen(len(s)) > len(dst) {
		return 0, errEncoded
	}
	return base64.RawURLEncoding.Decode(dst, readOnly(s))
}

// readOnly is s's bytes without a copy, for functions that only read them.
func readOnly(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// maxSniffedHeader bounds the headers mayBeAccepted decodes on the stack.
const maxSniffedHeader = 512

// mayBeAccepted reports whether go-jose could accept a protected header
// (base64url) for this codec: it must say alg "dir" and enc the format's, and
// without a backslash in it (JSON escapes) those strings appear as they are.
// A false answer is final: go-jose would refuse the token (an undecodable
// header, a missing or other alg or enc). So a forged header costs a decode of
// its few bytes, not a full parse.
func (c *Codec) mayBeAccepted(header string) bool {
	if len(header) > maxSniffedHeader {
		return true // let go-jose decide
	}
	var buf [maxSniffedHeader]byte
	n, err := base64.RawURLEncoding.Decode(buf[:], readOnly(header))
	if err != nil {
		return false
	}
	h := buf[:n]
	if bytes.IndexByte(h, '\\') >= 0 {
		return true
	}
	return bytes.Contains(h, []byte(`"dir"`)) && bytes.Contains(h, c.quotedEnc)
}
