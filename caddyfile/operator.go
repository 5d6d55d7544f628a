package caddyfile

import (
	cf "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/authgate/caddy-authgate/handlers"
)

// parseOperatorOption reads a realm's theme, pages or templates line (and block).
func parseOperatorOption(d *cf.Dispenser, r *handlers.Realm) error {
	var err error
	switch d.Val() {
	case "theme":
		r.Theme, err = parseTheme(d)
	case "pages":
		r.Pages, err = parsePages(d)
	case "templates":
		r.Templates, err = parseTemplates(d)
	}
	return err
}

// parseTheme reads a realm's theme block. Syntax:
//
//	theme {
//		title <text>
//		logo <url or path>
//		brand_color <#hex or colour name>
//		button_text_color <#hex or colour name>
//		color_scheme auto|light|dark
//	}
func parseTheme(d *cf.Dispenser) (*handlers.ThemeConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	t := &handlers.ThemeConfig{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "title":
			err = oneArg(d, &t.Title)
		case "logo":
			err = checkedArg(d, &t.Logo, "theme logo", handlers.ParsePageURL)
		case "brand_color":
			err = checkedArg(d, &t.BrandColor, "theme brand_color", handlers.ParseColor)
		case "button_text_color":
			err = checkedArg(d, &t.ButtonTextColor, "theme button_text_color", handlers.ParseColor)
		case "color_scheme":
			err = checkedArg(d, &t.ColorScheme, "theme", handlers.ParseColorScheme)
		default:
			err = d.Errf("unrecognized theme subdirective '%s'", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return t, nil
}

// parsePages reads a realm's pages block: the operator's own pages, each a
// path on the site or an absolute URL. Syntax:
//
//	pages {
//		sign_in <url>
//		sign_out <url>
//		error <url>
//		verify_request <url>
//		new_user <url>
//	}
func parsePages(d *cf.Dispenser) (*handlers.PagesConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	p := &handlers.PagesConfig{}
	dst := map[string]*string{
		"sign_in": &p.SignIn, "sign_out": &p.SignOut, "error": &p.Error,
		"verify_request": &p.VerifyRequest, "new_user": &p.NewUser,
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		field, ok := dst[d.Val()]
		if !ok {
			return nil, d.Errf("unrecognized pages subdirective '%s': want sign_in, sign_out, error, verify_request or new_user", d.Val())
		}
		if err := checkedArg(d, field, "pages "+d.Val(), handlers.ParsePageURL); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// parseTemplates reads `templates <directory>`.
func parseTemplates(d *cf.Dispenser) (string, error) {
	var dir string
	if !d.Args(&dir) || d.NextArg() {
		return "", d.Errf("templates needs one directory: templates /etc/caddy/authgate")
	}
	return dir, nil
}
