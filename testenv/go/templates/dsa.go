package main

// The Go side of the DSA cross-check: a key Lockstep's genPrivateKey "dsa" made must be one
// that sprig reads back (its DSAKeyFormat) and that Go's crypto/dsa signs and verifies with.

import (
	"bytes"
	"crypto/dsa" //nolint:staticcheck // sprig's genPrivateKey "dsa" makes keys for it
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
)

// dsaKeyFormat is sprig's DSAKeyFormat.
type dsaKeyFormat struct {
	Version       int
	P, Q, G, Y, X *big.Int
}

// checkDSA checks a DSA PRIVATE KEY PEM block: exactly what asn1.Marshal writes for its
// numbers, Go's dsa.L2048N256 sizes, prime p and q with q dividing p-1, g of order q,
// y = g^x mod p, and a signature made with it verifies.
func checkDSA(text string) error {
	block, rest := pem.Decode([]byte(text))
	if block == nil || block.Type != "DSA PRIVATE KEY" || len(rest) != 0 {
		return errors.New("not one DSA PRIVATE KEY block")
	}
	var k dsaKeyFormat
	if after, err := asn1.Unmarshal(block.Bytes, &k); err != nil || len(after) != 0 {
		return fmt.Errorf("not sprig's DSAKeyFormat: %v", err)
	}
	again, err := asn1.Marshal(k)
	if err != nil || !bytes.Equal(again, block.Bytes) {
		return errors.New("not the DER Go writes for these numbers")
	}
	one := big.NewInt(1)
	switch {
	case k.Version != 0:
		return fmt.Errorf("version %d", k.Version)
	case k.P.BitLen() != 2048 || k.Q.BitLen() != 256:
		return fmt.Errorf("sizes %d/%d, not L2048N256", k.P.BitLen(), k.Q.BitLen())
	case !k.P.ProbablyPrime(20) || !k.Q.ProbablyPrime(20):
		return errors.New("p or q is not prime")
	case new(big.Int).Mod(new(big.Int).Sub(k.P, one), k.Q).Sign() != 0:
		return errors.New("q does not divide p-1")
	case k.G.Cmp(one) <= 0 || new(big.Int).Exp(k.G, k.Q, k.P).Cmp(one) != 0:
		return errors.New("g is not of order q")
	case k.X.Sign() <= 0 || k.X.Cmp(k.Q) >= 0 || new(big.Int).Exp(k.G, k.X, k.P).Cmp(k.Y) != 0:
		return errors.New("x and y are not a key pair")
	}
	priv := &dsa.PrivateKey{
		PublicKey: dsa.PublicKey{Parameters: dsa.Parameters{P: k.P, Q: k.Q, G: k.G}, Y: k.Y},
		X:         k.X,
	}
	digest := sha256.Sum256([]byte("lockstep"))
	r, s, err := dsa.Sign(rand.Reader, priv, digest[:])
	if err != nil {
		return err
	}
	if !dsa.Verify(&priv.PublicKey, digest[:], r, s) {
		return errors.New("a signature made with the key does not verify")
	}
	return nil
}
