//go:build integration

package web

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
	"github.com/baton-ha/baton/internal/testenv"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// screenshotsEnv names a directory where TestBrowserFollowsFailover saves
// screenshots of the page (web.png, web-phone.png): the ones in docs/ are made with
// BATON_WEB_SCREENSHOTS=$PWD/docs.
const screenshotsEnv = "BATON_WEB_SCREENSHOTS"

// browser starts headless Chromium for the test and returns a tab's context.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		testenv.Need(t, errors.New("no chromium to drive the page: apt-get install chromium (make deps installs it)"))
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-dev-shm-usage", true))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(cancelTab)
	return ctx
}

// pageState is what the test reads from the page in the browser.
type pageState struct {
	Primary   string `json:"primary"`
	Live      string `json:"live"`
	LastEvent string `json:"lastEvent"`
	Marked    bool   `json:"marked"` // the mark set at load is still there: no reload
}

func readPage(ctx context.Context, clusterName string) (pageState, error) {
	js := fmt.Sprintf(`(() => {
		const s = document.querySelector('[data-cluster=%q]');
		const e = s && s.querySelector('.history .event .event-h');
		return {primary: s ? s.dataset.primary : "", live: document.getElementById('live').textContent,
			lastEvent: e ? e.textContent : "", marked: window.batonTestMark === true};
	})()`, clusterName)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[pageState](js))
}

// TestBrowserFollowsFailover drives the page in headless Chromium against a sandbox
// with agents: the page shows the primary; the primary's disk fills; without a
// reload the page shows the new primary and the failover in the history, pushed to
// it after the failover's commit in etcd (how soon is logged).
func TestBrowserFollowsFailover(t *testing.T) {
	tab := browser(t)
	c := sandboxtest.Up(t, sandbox.Spec{Name: "web", Nodes: 3, SemiSync: true, WithAgents: true, VIP: true})
	cli, err := c.EtcdClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	url := serve(t, cli, nil)

	ctx, cancel := context.WithTimeout(tab, 2*time.Minute)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Navigate(url+"/")); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	var st pageState
	sandboxtest.WaitFor(t, 20*time.Second, "the page showing db1 as primary, live", func() bool {
		st, err = readPage(ctx, c.Name)
		return err == nil && st.Primary == "db1" && strings.HasPrefix(st.Live, "live")
	})
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.batonTestMark = true`)); err != nil {
		t.Fatal(err)
	}

	// The commit: when etcd's watch first shows another primary of record.
	store := cluster.NewStore(cli, c.Name)
	var mu sync.Mutex
	var committed time.Time
	var newPrimary string
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go func() {
		_ = store.Watch(wctx, func(s cluster.Snapshot) error {
			if s.Primary.Node != "" && s.Primary.Node != "db1" {
				mu.Lock()
				committed, newPrimary = time.Now(), s.Primary.Node
				mu.Unlock()
				return errors.New("committed")
			}
			return nil
		})
	}()
	if err := c.Fault(ctx, "db1", sandbox.DiskFull); err != nil {
		t.Fatal(err)
	}
	sandboxtest.WaitFor(t, 30*time.Second, "a failover committed in etcd", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !committed.IsZero()
	})
	mu.Lock()
	at, to := committed, newPrimary
	mu.Unlock()
	sandboxtest.WaitFor(t, 20*time.Second, "the page showing "+to+" as primary and the failover in its history", func() bool {
		st, err = readPage(ctx, c.Name)
		return err == nil && st.Primary == to && strings.Contains(st.LastEvent, "failover db1 → "+to)
	})
	t.Logf("the page showed %s and the failover %s after the commit", to, time.Since(at).Round(time.Millisecond))
	if !st.Marked {
		t.Fatal("the page was reloaded")
	}

	dir := os.Getenv(screenshotsEnv)
	if dir == "" {
		return
	}
	time.Sleep(3 * time.Second) // let the other nodes settle for the picture
	shoot := func(name string, width, height int64, scale float64) {
		if _, err := chromedp.Run(ctx, chromedp.EmulateViewport(width, height, chromedp.EmulateScale(scale))); err != nil {
			t.Fatalf("viewport for %s: %v", name, err)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	shoot("web.png", 1280, 900, 1)
	shoot("web-phone.png", 390, 844, 2) // a phone's pixel density, readable in the docs
}

// TestBrowserLive drives the page in headless Chromium against etcd alone (no
// sandbox): a change in etcd reaches the page without a reload and is announced to
// screen readers; the keyboard reaches the skip link and the node table; at a
// phone's width nothing scrolls sideways.
func TestBrowserLive(t *testing.T) {
	tab := browser(t)
	cli, _ := sandboxtest.Etcd(t)
	seed(t, cli, "alpha")
	url := serve(t, cli, nil)
	ctx, cancel := context.WithTimeout(tab, time.Minute)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Navigate(url+"/")); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	var st pageState
	var err error
	sandboxtest.WaitFor(t, 10*time.Second, "the page showing db1, live", func() bool {
		st, err = readPage(ctx, "alpha")
		return err == nil && st.Primary == "db1" && strings.HasPrefix(st.Live, "live")
	})
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.batonTestMark = true`)); err != nil {
		t.Fatal(err)
	}

	// The keyboard: the first Tab reaches the skip link; the next ones reach the
	// node table's scrolling region (its columns can be scrolled with the arrows).
	focused := func() string {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.activeElement.className || document.activeElement.tagName) + ""`))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var seen []string
	for range 6 {
		if _, err := chromedp.Run(ctx, chromedp.KeyEvent("\t")); err != nil {
			t.Fatal(err)
		}
		seen = append(seen, focused())
	}
	if seen[0] != "skip" || !slices.Contains(seen, "scroll") {
		t.Errorf("tab order = %v, want the skip link first and the node table's region", seen)
	}

	// A reader in the node table: focus and nodes that did not change stay put
	// through an update.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('.scroll').focus();
		window.batonKeep = document.querySelector('.scroll table'); true`)); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	if _, err := cli.Put(pctx, cluster.NewKeys("alpha").Primary(), `{"node":"db2","addr":"198.18.0.12:3306","epoch":2}`); err != nil {
		t.Fatal(err)
	}
	sandboxtest.WaitFor(t, 20*time.Second, "the page showing db2", func() bool {
		st, err = readPage(ctx, "alpha")
		return err == nil && st.Primary == "db2"
	})
	t.Logf("the page showed the new primary %s after the write to etcd", time.Since(start).Round(time.Millisecond))
	if !st.Marked {
		t.Fatal("the page was reloaded")
	}
	if f := focused(); f != "scroll" {
		t.Errorf("after the update the focus is on %q, want the node table's region", f)
	}
	kept, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.batonKeep === document.querySelector('.scroll table')`))
	if err != nil || !kept {
		t.Errorf("the node table was replaced by the update (%v)", err)
	}
	said, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('announce').textContent`))
	if err != nil || said != "Cluster alpha: the primary is now db2." {
		t.Errorf("announced %q (%v)", said, err)
	}

	if _, err := chromedp.Run(ctx, chromedp.EmulateViewport(390, 844)); err != nil {
		t.Fatal(err)
	}
	width, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
	if err != nil || width > 390 {
		t.Errorf("at a phone's width (390 px) the page is %d px wide (%v)", width, err)
	}
}
