package source

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nodeimage/reconcile/internal/rootfs"
)

// httpClient sends every request of a Fetcher, to web servers and
// registries alike: system roots plus Options.CAFile, plain HTTP refused
// off loopback on every hop (redirects and token servers included), and
// each request cancelled once no byte arrives for IdleTimeout.
type httpClient struct{ *http.Client }

func newHTTPClient(o Options) (*httpClient, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		return nil, fmt.Errorf("loading the system's certificate roots: %w", err)
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate in it", o.CAFile)
		}
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 30 * time.Second,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 4,
		// The digest covers the bytes as served; a transparent gunzip
		// would hash something else.
		DisableCompression: true,
	}
	return &httpClient{&http.Client{Transport: &guard{next: tr, idle: o.IdleTimeout}, Timeout: o.RequestTimeout}}, nil
}

// loopback reports whether host is "localhost" or a loopback address. Other
// names are not resolved: what a name resolves to may change.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

type guard struct {
	next http.RoundTripper
	idle time.Duration
}

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" && (req.URL.Scheme != "http" || !loopback(req.URL.Hostname())) {
		return nil, fmt.Errorf("%s %s: %w", req.Method, redact(req.URL.String()), ErrPlainHTTP)
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	stall := fmt.Errorf("%w: no data from %s for %s", ErrStalled, req.URL.Host, g.idle)
	timer := time.AfterFunc(g.idle, func() { cancel(stall) })
	resp, err := g.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		timer.Stop()
		cause := context.Cause(ctx)
		cancel(nil)
		if errors.Is(cause, ErrStalled) {
			return nil, cause
		}
		return nil, err
	}
	resp.Body = &idleBody{rc: resp.Body, ctx: ctx, cancel: cancel, timer: timer, idle: g.idle}
	return resp, nil
}

// idleBody restarts the idle timer on every read.
type idleBody struct {
	rc     io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	idle   time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.timer.Reset(b.idle)
	}
	if err != nil && err != io.EOF {
		if cause := context.Cause(b.ctx); errors.Is(cause, ErrStalled) {
			return n, cause
		}
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel(nil)
	return err
}

// statusError is an HTTP answer that is not the content.
type statusError struct {
	code int
	url  string
	body string
}

func (e *statusError) Error() string {
	msg := fmt.Sprintf("GET %s: HTTP %d %s", e.url, e.code, http.StatusText(e.code))
	if e.body != "" {
		msg += ": " + e.body
	}
	return msg
}

// transient reports whether trying err again may help: a server error,
// throttling, a cut or stalled connection. Refusals, certificate
// problems, missing content and wrong content are final.
func transient(err error) bool {
	if t, ok := registryTransient(err); ok {
		return t
	}
	var se *statusError
	if errors.As(err, &se) {
		return se.code >= 500 || se.code == http.StatusRequestTimeout || se.code == http.StatusTooManyRequests
	}
	var (
		unknownCA *x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		write     *writeError
	)
	switch {
	case errors.Is(err, ErrPlainHTTP), errors.Is(err, ErrDigest), errors.Is(err, ErrTooLarge),
		errors.Is(err, context.Canceled) && !errors.Is(err, ErrStalled),
		errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verify),
		errors.As(err, &write):
		return false
	}
	return true
}

// retry runs try up to Attempts times with doubling waits between them,
// until it succeeds, fails for good, or ctx ends.
func (f *Fetcher) retry(ctx context.Context, what string, try func(context.Context) error) error {
	wait := f.o.Backoff
	for attempt := 1; ; attempt++ {
		err := try(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return gaveUp(ctx, err, attempt)
		}
		if !transient(err) {
			return err
		}
		if attempt == f.o.Attempts {
			return fmt.Errorf("%w (gave up after %s)", err, plural(attempt, "attempt"))
		}
		f.o.Logger.Warn("retrying", "what", what, "attempt", attempt, "of", f.o.Attempts, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return gaveUp(ctx, err, attempt)
		}
		wait = min(2*wait, f.o.MaxBackoff)
	}
}

// gaveUp is err of the last attempt once ctx ended, saying why.
func gaveUp(ctx context.Context, err error, attempts int) error {
	if cause := context.Cause(ctx); !errors.Is(err, cause) {
		return fmt.Errorf("%w (gave up after %s: %w)", err, plural(attempts, "attempt"), cause)
	}
	return fmt.Errorf("%w (gave up after %s)", err, plural(attempts, "attempt"))
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// ofTotal says how much of the file n bytes are.
func ofTotal(n, total int64) string {
	if total < 0 {
		return fmt.Sprintf("%d bytes", n)
	}
	return fmt.Sprintf("%d of %d bytes", n, total)
}

// download is one file to fetch over HTTP.
type download struct {
	url    string
	do     func(*http.Request) (*http.Response, error)
	size   int64  // declared by an OCI descriptor; -1 when unknown
	sha256 string // hex the content must have
}

// download fetches d into rel under root through rootfs.WriteChecked: the
// content is hashed while written to a temp file, and the file gets its
// name only when size and digest are right. A retry after a cut
// connection asks for the rest with Range; a server that answers with the
// whole file instead is read past what was already written.
func (f *Fetcher) download(ctx context.Context, root *os.Root, rel string, d download) (rootfs.Result, error) {
	started := time.Now()
	f.o.Logger.Info("downloading", "url", redact(d.url), "to", "/"+rel)
	total := d.size
	if total > f.o.MaxSize {
		return rootfs.Result{}, fmt.Errorf("%d bytes declared, limit %d: %w", total, f.o.MaxSize, ErrTooLarge)
	}
	res, err := rootfs.WriteChecked(root, rel, 0o644, func(w io.Writer) error {
		p := &progress{w: w, fn: f.o.Progress, total: &total}
		err := f.retry(ctx, "GET "+redact(d.url), func(ctx context.Context) error {
			return f.attempt(ctx, d, p, &total)
		})
		if err == nil {
			p.report(true)
		}
		return err
	}, func(res rootfs.Result) error {
		if res.SHA256 != d.sha256 {
			return fmt.Errorf("%w: downloaded %d bytes with sha256 %s, the pin is %s", ErrDigest, res.Size, res.SHA256, d.sha256)
		}
		return nil
	})
	if err != nil {
		return rootfs.Result{}, err
	}
	f.o.Logger.Info("downloaded", "url", redact(d.url), "bytes", res.Size, "duration", time.Since(started).Round(time.Millisecond))
	return res, nil
}

// attempt is one GET of d, appending to p what p does not have yet.
func (f *Fetcher) attempt(ctx context.Context, d download, p *progress, total *int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url, nil)
	if err != nil {
		return err
	}
	have := p.n
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	resp, err := d.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	skip := int64(0)
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		start, size, err := contentRange(resp.Header.Get("Content-Range"))
		if err != nil || start != have || (*total >= 0 && size >= 0 && size != *total) {
			return fmt.Errorf("GET %s: asked for bytes from %d, got Content-Range %q", redact(d.url), have, resp.Header.Get("Content-Range"))
		}
		if *total < 0 {
			*total = size
		}
	case resp.StatusCode == http.StatusOK:
		if have > 0 {
			f.o.Logger.Info("server does not resume, reading from the start", "url", redact(d.url), "have", have)
		}
		skip = have
		if n := resp.ContentLength; n >= 0 {
			if *total >= 0 && n != *total {
				return fmt.Errorf("GET %s: %d bytes, expected %d", redact(d.url), n, *total)
			}
			*total = n
		}
	default:
		se := &statusError{code: resp.StatusCode, url: redact(d.url)}
		// An error page says why; a body of another kind is not for people.
		if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "text/") || strings.Contains(ct, "json") {
			snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
			se.body = strings.TrimSpace(strings.ToValidUTF8(string(snippet), "?"))
		}
		return se
	}
	if *total > f.o.MaxSize {
		return fmt.Errorf("%d bytes, limit %d: %w", *total, f.o.MaxSize, ErrTooLarge)
	}
	if skip > 0 {
		if _, err := io.CopyN(io.Discard, resp.Body, skip); err != nil {
			return fmt.Errorf("GET %s: re-reading the first %d bytes: %w", redact(d.url), skip, noEOF(err))
		}
	}
	limit := f.o.MaxSize
	if *total >= 0 {
		limit = *total
	}
	n, err := copyBody(p, io.LimitReader(resp.Body, limit-p.n+1))
	if err != nil {
		if errors.As(err, new(*writeError)) {
			return err
		}
		// The client's request timer surfaces as a canceled request or a
		// deadline, depending on where the read was: say which limit it was.
		var te interface{ Timeout() bool }
		if ctx.Err() == nil && errors.As(err, &te) && te.Timeout() {
			err = fmt.Errorf("longer than the request timeout of %s: %w", f.o.RequestTimeout, err)
		}
		return fmt.Errorf("GET %s: connection failed after %s (%d in this attempt): %w", redact(d.url), ofTotal(p.n, *total), n, err)
	}
	if p.n > limit {
		if *total >= 0 {
			return fmt.Errorf("GET %s: more than the %d bytes announced", redact(d.url), *total)
		}
		return fmt.Errorf("more than %d bytes: %w", f.o.MaxSize, ErrTooLarge)
	}
	if *total >= 0 && p.n < *total {
		return fmt.Errorf("GET %s: connection closed after %s (%d in this attempt): %w", redact(d.url), ofTotal(p.n, *total), n, io.ErrUnexpectedEOF)
	}
	return nil
}

// writeError marks a failure of the destination, which no retry cures.
type writeError struct{ err error }

func (e *writeError) Error() string { return "writing the download: " + e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// copyBody copies r to p, telling write errors (final) from read errors.
func copyBody(p *progress, r io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)
	var n int64
	for {
		k, rerr := r.Read(buf)
		if k > 0 {
			if _, err := p.Write(buf[:k]); err != nil {
				return n, &writeError{err}
			}
			n += int64(k)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// contentRange parses "bytes <start>-<end>/<size>"; size is -1 for "*".
func contentRange(v string) (start, size int64, err error) {
	bad := fmt.Errorf("malformed Content-Range %q", v)
	spec, ok := strings.CutPrefix(v, "bytes ")
	rng, sz, ok2 := strings.Cut(spec, "/")
	first, _, ok3 := strings.Cut(rng, "-")
	if !ok || !ok2 || !ok3 {
		return 0, 0, bad
	}
	if start, ok = nonNegative(first); !ok {
		return 0, 0, bad
	}
	if sz == "*" {
		return start, -1, nil
	}
	if size, ok = nonNegative(sz); !ok || start >= size {
		return 0, 0, bad
	}
	return start, size, nil
}

// nonNegative parses decimal digits only (no sign) into an int64.
func nonNegative(s string) (int64, bool) {
	n, err := strconv.ParseUint(s, 10, 63)
	return int64(n), err == nil
}

// progress counts what reaches w and reports it at most every MiB.
type progress struct {
	w     io.Writer
	n     int64
	last  int64
	fn    func(done, total int64)
	total *int64 // as last known; -1 while unknown
}

const progressStep = 1 << 20

func (p *progress) Write(b []byte) (int, error) {
	k, err := p.w.Write(b)
	p.n += int64(k)
	if p.fn != nil && p.n-p.last >= progressStep {
		p.report(false)
	}
	return k, err
}

func (p *progress) report(final bool) {
	if p.fn != nil && (final || p.n != p.last) {
		p.last = p.n
		p.fn(p.n, *p.total)
	}
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
