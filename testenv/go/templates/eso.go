package main

// ESO's own template functions (runtime/template/v2), written again here on the libraries
// ESO uses (go-pkcs12, jwx v2, sigs.k8s.io/yaml) so that the goldens come from the same
// code paths.

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"strings"
	"text/template"

	"github.com/lestrrat-go/jwx/v2/jwk"
	gopkcs12 "software.sslmate.com/src/go-pkcs12"
	"sigs.k8s.io/yaml"
)

func esoFuncs(f template.FuncMap) {
	f["pkcs12key"] = func(in string) (string, error) { return pkcs12keyPass("", in) }
	f["pkcs12keyPass"] = pkcs12keyPass
	f["pkcs12cert"] = func(in string) (string, error) { return pkcs12certPass("", in) }
	f["pkcs12certPass"] = pkcs12certPass
	f["pemToPkcs12"] = func(c, k string) (string, error) { return pemToPkcs12Pass(c, k, "") }
	f["pemToPkcs12Pass"] = pemToPkcs12Pass
	f["fullPemToPkcs12"] = func(c, k string) (string, error) { return fullPemToPkcs12Pass(c, k, "") }
	f["fullPemToPkcs12Pass"] = fullPemToPkcs12Pass
	f["pemTruststoreToPKCS12"] = func(c string) (string, error) { return truststorePass(c, "") }
	f["pemTruststoreToPKCS12Pass"] = truststorePass
	f["filterPEM"] = filterPEM
	f["filterCertChain"] = filterCertChain
	f["certSANs"] = certSANs
	f["jwkPublicKeyPem"] = jwkPublicKeyPem
	f["jwkPrivateKeyPem"] = jwkPrivateKeyPem
	f["toYaml"] = toYAML
	f["fromYaml"] = fromYAML
	f["rsaDecrypt"] = rsaDecrypt
}

func pemBlock(kind string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}))
}

func parseAnyKey(der []byte) (any, error) {
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("unable to parse private key type")
}

func pkcs12keyPass(pass, in string) (string, error) {
	key, _, _, err := gopkcs12.DecodeChain([]byte(in), pass)
	if err != nil {
		return "", fmt.Errorf("unable to decode pkcs12 with password: %s", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", err
	}
	return pemBlock("PRIVATE KEY", der), nil
}

func pkcs12certPass(pass, in string) (string, error) {
	_, cert, cas, err := gopkcs12.DecodeChain([]byte(in), pass)
	if err != nil {
		return "", fmt.Errorf("unable to decode pkcs12 certificate with password: %s", err)
	}
	out := pemBlock("CERTIFICATE", cert.Raw)
	for _, c := range cas {
		out += pemBlock("CERTIFICATE", c.Raw)
	}
	ordered, err := orderChain([]byte(out))
	if err != nil {
		return out, nil
	}
	var b strings.Builder
	for _, c := range ordered {
		b.WriteString(pemBlock("CERTIFICATE", c.Raw))
	}
	return b.String(), nil
}

func firstCert(in string) (*x509.Certificate, []byte, error) {
	block, rest := pem.Decode([]byte(in))
	if block == nil {
		return nil, nil, errors.New("invalid memory address or nil pointer dereference")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	return c, rest, err
}

func parseCAs(rest []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for len(rest) > 0 {
		block, r := pem.Decode(rest)
		if block == nil {
			return nil, errors.New("invalid memory address or nil pointer dereference")
		}
		rest = r
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func toP12(cert *x509.Certificate, key string, cas []*x509.Certificate, pass string) (string, error) {
	block, _ := pem.Decode([]byte(key))
	if block == nil {
		return "", errors.New("invalid memory address or nil pointer dereference")
	}
	k, err := parseAnyKey(block.Bytes)
	if err != nil {
		return "", err
	}
	pfx, err := gopkcs12.Modern.Encode(k, cert, cas, pass)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(pfx), nil
}

func pemToPkcs12Pass(cert, key, pass string) (string, error) {
	c, _, err := firstCert(cert)
	if err != nil {
		return "", err
	}
	return toP12(c, key, nil, pass)
}

func fullPemToPkcs12Pass(cert, key, pass string) (string, error) {
	c, rest, err := firstCert(cert)
	if err != nil {
		return "", err
	}
	cas, err := parseCAs(rest)
	if err != nil {
		return "", err
	}
	return toP12(c, key, cas, pass)
}

func truststorePass(cert, pass string) (string, error) {
	cas, err := parseCAs([]byte(cert))
	if err != nil {
		return "", err
	}
	pfx, err := gopkcs12.Modern.EncodeTrustStore(cas, pass)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(pfx), nil
}

func trimJunk(in string) string {
	if i := strings.Index(in, "-----BEGIN"); i >= 0 {
		return in[i:]
	}
	return in
}

func filterPEM(kind, in string) (string, error) {
	data := []byte(trimJunk(in))
	var out []byte
	var rest []byte
	for {
		var block *pem.Block
		block, rest = pem.Decode(data)
		data = rest
		if block == nil {
			break
		}
		if strings.EqualFold(block.Type, kind) {
			out = append(out, pem.EncodeToMemory(block)...)
		}
	}
	if len(out) == 0 && len(rest) != 0 {
		return "", errors.New("error filtering pem: found junk")
	}
	return string(out), nil
}

// orderChain puts the certificates leaf first, following authority key ids.
func orderChain(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		block, rest := pem.Decode(data)
		data = rest
		if block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	n := len(certs)
	parent := make([]int, n)
	isParent := make([]bool, n)
	for i := range certs {
		parent[i] = -1
		for j := range certs {
			if i != j && bytes.Equal(certs[i].AuthorityKeyId, certs[j].SubjectKeyId) {
				isParent[j] = true
				parent[i] = j
				break
			}
		}
	}
	leaf := -1
	for i := range certs {
		if !isParent[i] {
			if leaf >= 0 {
				return nil, errors.New("found multiple leaf or disjunct certificates")
			}
			leaf = i
		}
	}
	if leaf < 0 {
		return nil, errors.New("no leaf certificate found")
	}
	var out []*x509.Certificate
	for i := leaf; i >= 0; i = parent[i] {
		if len(out) >= n {
			return nil, errors.New("constructing chain resulted in cycle")
		}
		out = append(out, certs[i])
	}
	return out, nil
}

func isRoot(c *x509.Certificate) bool {
	return c.AuthorityKeyId == nil || bytes.Equal(c.AuthorityKeyId, c.SubjectKeyId)
}

func filterCertChain(kind, in string) (string, error) {
	ordered, err := orderChain([]byte(in))
	if err != nil {
		return "", err
	}
	switch kind {
	case "leaf":
		c := ordered[0]
		if c.AuthorityKeyId != nil && !bytes.Equal(c.AuthorityKeyId, c.SubjectKeyId) {
			return pemBlock("CERTIFICATE", c.Raw), nil
		}
	case "intermediate":
		var out string
		for _, c := range ordered[1:] {
			if isRoot(c) {
				break
			}
			out += pemBlock("CERTIFICATE", c.Raw)
		}
		return out, nil
	case "root":
		c := ordered[len(ordered)-1]
		if isRoot(c) {
			return pemBlock("CERTIFICATE", c.Raw), nil
		}
	}
	return "", nil
}

func certSANs(in string) ([]string, error) {
	block, _ := pem.Decode([]byte(trimJunk(in)))
	if block == nil {
		return nil, errors.New("failed to decode PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("failed to parse certificate: %w", err)
	}
	out := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	out = append(out, c.EmailAddresses...)
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	return out, nil
}

func jwkPublicKeyPem(in string) (string, error) {
	k, err := jwk.ParseKey([]byte(in))
	if err != nil {
		return "", err
	}
	var raw any
	if err := k.Raw(&raw); err != nil {
		return "", err
	}
	der, err := x509.MarshalPKIXPublicKey(raw)
	if err != nil {
		return "", err
	}
	return pemBlock("PUBLIC KEY", der), nil
}

func jwkPrivateKeyPem(in string) (string, error) {
	k, err := jwk.ParseKey([]byte(in))
	if err != nil {
		return "", err
	}
	var raw any
	if err := k.Raw(&raw); err != nil {
		return "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(raw)
	if err != nil {
		return "", err
	}
	return pemBlock("PRIVATE KEY", der), nil
}

func toYAML(v any) string {
	data, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

func fromYAML(s string) map[string]any {
	m := map[string]any{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func rsaDecrypt(scheme, hashName, in, key string) (string, error) {
	switch scheme {
	case "None":
		return in, nil
	case "RSA-OAEP":
	default:
		return "", fmt.Errorf("decryption scheme %v is not supported", scheme)
	}
	block, _ := pem.Decode([]byte(key))
	if block == nil {
		return "", errors.New("failed to decode PEM block")
	}
	k, err := parseAnyKey(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("could not parse private key: %v", err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return "", errors.New("could not parse RSA private key")
	}
	var h hash.Hash
	switch hashName {
	case "SHA1":
		h = crypto.SHA1.New()
	case "SHA512":
		h = sha512.New()
	default:
		h = sha256.New()
	}
	out, err := rsa.DecryptOAEP(h, nil, rk, []byte(in), nil)
	if err != nil {
		return "", fmt.Errorf("error decrypting data with RSA: %v", err)
	}
	return string(out), nil
}
