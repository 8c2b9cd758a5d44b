// Package device classifies a click's User-Agent as desktop, mobile, tablet or bot, and names its OS and browser.
package device

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"

	useragent "github.com/medama-io/go-useragent"
	"github.com/medama-io/go-useragent/agents"
)

// Classes, the values of Info.Class. They are the click message's `device`
// field and the `device` variable of catalog rules.
const (
	Desktop = "desktop" // desktops and laptops, and big screens: smart TVs, consoles
	Mobile  = "mobile"  // phones
	Tablet  = "tablet"  // tablets, including Android tablets and Kindle Fire
	Bot     = "bot"     // crawlers, link-preview fetchers, HTTP libraries and tools
	Unknown = "unknown" // empty or unrecognizable User-Agent
)

// MaxLen is how much of a User-Agent Classify examines. Real ones are under
// 500 bytes; the cap bounds the work a hostile header can cause.
const MaxLen = 1024

// Info is what a User-Agent says about the client.
type Info struct {
	// Class is Desktop, Mobile, Tablet, Bot or Unknown.
	Class string
	// OS is the operating system, e.g. "Windows", "MacOS", "iOS",
	// "Android", "Linux", "ChromeOS"; "" when unknown and for bots.
	OS string
	// Browser is the browser, e.g. "Chrome", "Safari", "Firefox", "Edge",
	// "Samsung Browser". For an in-app browser it is the app: "Instagram",
	// "Facebook", "TikTok", "Snapchat", "WeChat", "LINE", "Pinterest",
	// "Google App", "Telegram", "KakaoTalk". For a bot it is the bot's
	// name, e.g. "Googlebot", "Slackbot", "Python", or the User-Agent's own
	// word for a bot this package does not list. "" when unknown.
	Browser string
	// Bot is true for automated clients: search and other crawlers,
	// link-preview and chat-unfurl fetchers, monitoring, headless browsers
	// and HTTP libraries. Class is then Bot. Command-line clients (curl,
	// Wget, ...) are not bots.
	Bot bool
	// Preview is true for link-preview and chat-unfurl fetchers (Slackbot,
	// facebookexternalhit, Twitterbot, WhatsApp, TelegramBot, Discordbot,
	// LinkedInBot, SkypeUriPreview, ...), which fetch a link because
	// someone posted it, not because someone clicked it. Preview implies Bot.
	Preview bool
}

// parser is built on first use: building the trie takes tens of
// milliseconds and about 5 MB, which programs that never classify (the
// CLI's other subcommands) should not pay.
var parser = sync.OnceValue(useragent.NewParser)

// Warm builds the User-Agent tables now, so that the first Classify does not
// pay for it (about 30 ms). Safe to call more than once and concurrently.
func Warm() { parser() }

// Classify returns what ua says about the client. It is safe for concurrent
// use, does not allocate on a cache hit, and never fails: anything it cannot
// recognize is Unknown. It keeps nothing of ua: the caller may reuse ua's
// memory as soon as it returns, and the strings in Info never point into it.
//
// Decisions (see the package tests for the corpus):
//   - An empty User-Agent, or one without a word of letters, is Unknown,
//     not a bot: some privacy tools strip the header from real users.
//   - HTTP libraries (python-requests, Go-http-client, okhttp, Java,
//     axios, ...) and any User-Agent carrying a URL are bots, not
//     previews.
//   - Command-line clients and API tools a person drives (curl, Wget,
//     HTTPie, PowerShell, Postman, Insomnia) are not bots: Class Unknown,
//     Browser the tool's name, so that a new user's first curl click is
//     recorded as a click. A catalog rule can still route them
//     (`browser == "curl"`).
//   - In-app browsers (Instagram, Facebook, TikTok, ...) are real users,
//     classified by their device.
//   - An Android User-Agent without "Mobile" is a tablet, as Google
//     specifies; an iPad asking for the desktop site (iPadOS's default)
//     sends a Mac User-Agent and is Desktop. Smart TVs and consoles are
//     Desktop.
func Classify(ua string) Info {
	if len(ua) > MaxLen {
		ua = ua[:MaxLen]
	}
	// Real traffic repeats a few thousand user agents over and over: a
	// direct-mapped cache answers those in a hash and a compare instead of
	// the ~700ns of the scan and the parser. A miss costs two small
	// allocations; a collision just replaces the slot. Lock-free: a slot is
	// an atomic pointer to an immutable entry.
	slot := &cache[maphash.String(cacheSeed, ua)&(cacheSize-1)]
	if e := slot.Load(); e != nil && e.ua == ua {
		return e.info
	}
	// The entry outlives the call, and ua is often a view of a buffer the
	// caller reuses (fasthttp's request header): the key, and the bot names
	// classify cuts out of it, must be the cache's own bytes. Classifying
	// the copy makes every string in info the copy's or a constant.
	own := strings.Clone(ua)
	info := classify(own)
	slot.Store(&cacheEntry{ua: own, info: info})
	return info
}

const cacheSize = 4096 // a power of two

type cacheEntry struct {
	ua   string
	info Info
}

var (
	cache     [cacheSize]atomic.Pointer[cacheEntry]
	cacheSeed = maphash.MakeSeed()
)

// classify does the work of Classify, uncached.
func classify(ua string) Info {
	var s scan
	s.run(ua)
	if !s.words {
		return Info{Class: Unknown}
	}
	switch {
	case s.preview != "":
		return Info{Class: Bot, Browser: s.preview, Bot: true, Preview: true}
	case s.bot != "":
		return Info{Class: Bot, Browser: s.bot, Bot: true}
	case s.tool != "":
		return Info{Class: Unknown, Browser: s.tool}
	}
	// The library names the OS and browser; the scan refines the class,
	// which the library gets wrong for Android tablets, and names in-app
	// browsers, some of which the library takes for bots (Instagram,
	// Pinterest).
	agent := parser().Parse(ua)
	info := Info{
		Class:   s.class(agent.Device()),
		OS:      string(agent.OS()),
		Browser: string(agent.Browser()),
	}
	if s.inApp != "" {
		info.Browser = s.inApp
	} else if s.operaMini {
		info.Browser = string(agents.BrowserOperaMini)
	}
	return info
}

// class decides the device class of a User-Agent that is not a bot.
func (s *scan) class(dev agents.Device) string {
	switch {
	case s.tablet || s.ipad:
		return Tablet
	case s.tv || dev == agents.DeviceTV:
		return Desktop
	case s.android:
		if s.mobile || s.operaMini {
			return Mobile
		}
		return Tablet
	case s.phone || s.mobile:
		return Mobile
	}
	switch dev {
	case agents.DeviceDesktop:
		return Desktop
	case agents.DeviceMobile:
		return Mobile
	case agents.DeviceTablet:
		return Tablet
	}
	return Unknown
}
