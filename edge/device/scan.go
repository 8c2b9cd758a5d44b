package device

import "strings"

// scan is one pass over the words of a User-Agent (runs of ASCII letters and
// digits) that finds bots, previews, in-app browsers and the tokens that
// decide the device class. Words are matched whole and case-insensitively,
// so "CUBOT" (a phone maker) is not a bot and "Line/14" is LINE while
// "Online" is nothing.
type scan struct {
	words     bool   // at least one word with a letter
	preview   string // name of the first preview fetcher found
	bot       string // name of the first other bot found
	inApp     string // name of the first in-app browser found
	tool      string // name of the first command-line client or API tool found
	mobile    bool   // "Mobile"
	tablet    bool   // "Tablet"
	ipad      bool   // "iPad"
	phone     bool   // "iPhone", "iPod", "Windows Phone"
	android   bool   // "Android"
	tv        bool   // "TV", "SmartTV", "CrKey", ...
	operaMini bool   // "Opera Mini"
}

// maxWord is the longest word looked up in the table; longer words (ids,
// hashes) are only checked for a "bot" suffix.
const maxWord = 32

// lower maps word bytes (ASCII letters and digits) to their lower case and
// every other byte to 0.
var lower = func() (t [256]byte) {
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c)
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = byte(c)
		t[c-'a'+'A'] = byte(c)
	}
	return t
}()

func (s *scan) run(ua string) {
	var buf [maxWord]byte
	for i := 0; i < len(ua); {
		if lower[ua[i]] == 0 {
			i++
			continue
		}
		start, n, letters := i, 0, false
		for ; i < len(ua); i++ {
			c := lower[ua[i]]
			if c == 0 {
				break
			}
			if n < maxWord {
				buf[n] = c
				n++
			}
			letters = letters || c > '9'
		}
		if !letters {
			continue // version numbers
		}
		s.words = true
		w := ua[start:i]
		if len(w) > maxWord {
			// Too long to be a table word; still catch "...Bot".
			if strings.EqualFold(w[len(w)-3:], "bot") {
				s.setBot(w)
			}
			continue
		}
		s.word(w, string(buf[:n]), ua[i:])
	}
}

// word handles one word w, lw in lower case, followed by rest.
func (s *scan) word(w, lw, rest string) {
	tok, ok := tokens[lw]
	if !ok {
		// Generic crawler names: FooBot, Baiduspider, SomeCrawler.
		if strings.HasSuffix(lw, "bot") ||
			len(lw) >= 5 && (strings.Contains(lw, "spider") || strings.Contains(lw, "crawl")) {
			s.setBot(w)
		}
		return
	}
	switch tok.kind {
	case kPreview:
		if s.preview == "" {
			s.preview = tok.name
		}
	case kBot:
		s.setBot(tok.name)
	case kInApp:
		if s.inApp == "" {
			s.inApp = tok.name
		}
	case kTool:
		if s.tool == "" {
			s.tool = tok.name
		}
	case kLine:
		if s.inApp == "" && strings.HasPrefix(rest, "/") {
			s.inApp = tok.name
		}
	case kMobile:
		s.mobile = true
	case kTablet:
		s.tablet = true
	case kIPad:
		s.ipad = true
	case kPhone:
		s.phone = true
	case kAndroid:
		s.android = true
	case kTV:
		s.tv = true
	case kOperaMini:
		s.operaMini = true
	}
}

func (s *scan) setBot(name string) {
	if s.bot == "" {
		s.bot = name
	}
}

type kind uint8

const (
	kNone      kind = iota // a known word that says nothing: skips the generic checks
	kPreview               // link-preview or chat-unfurl fetcher
	kBot                   // other bot, tool or HTTP library
	kInApp                 // in-app browser: a real user
	kLine                  // "Line" followed by "/": the LINE app
	kMobile                // "Mobile"
	kTablet                // "Tablet"
	kIPad                  // "iPad"
	kPhone                 // "iPhone", "iPod", "Windows Phone"
	kAndroid               // "Android"
	kTV                    // big screens
	kOperaMini             // "Opera Mini"
	kTool                  // a command-line client or API tool a person drives: not a bot
)

type token struct {
	kind kind
	name string // for kPreview, kBot, kInApp, kLine: the Browser to report
}

// tokens maps lower-case words to what they say. Bots whose names end in
// "bot" or contain "spider" or "crawl" need no entry.
var tokens = map[string]token{
	// Link-preview and chat-unfurl fetchers.
	"slackbot":            {kPreview, "Slackbot"},
	"imgproxy":            {kPreview, "Slack-ImgProxy"}, // fetches unfurl images
	"facebookexternalhit": {kPreview, "facebookexternalhit"},
	"facebot":             {kPreview, "Facebot"},
	"twitterbot":          {kPreview, "Twitterbot"},
	"whatsapp":            {kPreview, "WhatsApp"},
	"telegrambot":         {kPreview, "TelegramBot"},
	"discordbot":          {kPreview, "Discordbot"},
	"linkedinbot":         {kPreview, "LinkedInBot"},
	"skypeuripreview":     {kPreview, "SkypeUriPreview"}, // Skype and Microsoft Teams
	"pinterestbot":        {kPreview, "Pinterestbot"},
	"redditbot":           {kPreview, "redditbot"},
	"embedly":             {kPreview, "Embedly"},
	"iframely":            {kPreview, "Iframely"},
	"vkshare":             {kPreview, "vkShare"},
	"mastodon":            {kPreview, "Mastodon"},
	"cardyb":              {kPreview, "Bluesky"},
	"pagerenderer":        {kPreview, "Google-PageRenderer"}, // Google Chat and others
	"preview":             {kPreview, "Preview"},             // "Snap URL Preview Service", "Yahoo Link Preview", ...
	"quicklook":           {kPreview, "QuickLook"},           // Apple's link previews

	// Crawlers, tools and HTTP libraries the generic rules miss.
	"google":          {kBot, "Google"}, // AdsBot-Google, Google-InspectionTool, ...; no browser says "Google"
	"mediapartners":   {kBot, "Mediapartners-Google"},
	"googleother":     {kBot, "GoogleOther"},
	"feedfetcher":     {kBot, "FeedFetcher"},
	"slurp":           {kBot, "Slurp"},
	"archiver":        {kBot, "ia_archiver"},
	"yeti":            {kBot, "Yeti"},
	"facebookcatalog": {kBot, "facebookcatalog"},
	"externalagent":   {kBot, "meta-externalagent"},
	"externalfetcher": {kBot, "meta-externalfetcher"},
	"headlesschrome":  {kBot, "HeadlessChrome"},
	"headless":        {kBot, "HeadlessChrome"},
	"lighthouse":      {kBot, "Lighthouse"},
	"phantomjs":       {kBot, "PhantomJS"},
	"validator":       {kBot, "Validator"},
	"linkcheck":       {kBot, "LinkCheck"},
	"yahooad":         {kBot, "YahooAd"},
	"libcurl":         {kBot, "curl"},
	"pycurl":          {kBot, "curl"},
	"http":            {kBot, "HTTP client"}, // Go-http-client, http.rb, and URLs in crawler names
	"https":           {kBot, "HTTP client"},
	"python":          {kBot, "Python"},
	"urllib":          {kBot, "Python"},
	"urllib3":         {kBot, "Python"},
	"aiohttp":         {kBot, "Python"},
	"httpx":           {kBot, "Python"},
	"scrapy":          {kBot, "Python"},
	"okhttp":          {kBot, "okhttp"},
	"java":            {kBot, "Java"},
	"httpclient":      {kBot, "Java"},
	"axios":           {kBot, "Node.js"},
	"fetch":           {kBot, "Node.js"},
	"undici":          {kBot, "Node.js"},
	"node":            {kBot, "Node.js"},
	"nodejs":          {kBot, "Node.js"},
	"libwww":          {kBot, "Perl"},
	"perl":            {kBot, "Perl"},
	"lwp":             {kBot, "Perl"},
	"ruby":            {kBot, "Ruby"},
	"faraday":         {kBot, "Ruby"},
	"php":             {kBot, "PHP"},
	"guzzlehttp":      {kBot, "PHP"},
	"dart":            {kBot, "Dart"},
	"reqwest":         {kBot, "Rust"},

	// Command-line clients and API tools: a person trying a link (a new
	// user's first click is often curl's), not a crawler. Not bots; a
	// catalog rule can route them by browser ("curl", "Wget", ...).
	"curl":              {kTool, "curl"},
	"wget":              {kTool, "Wget"},
	"postmanruntime":    {kTool, "Postman"},
	"insomnia":          {kTool, "Insomnia"},
	"httpie":            {kTool, "HTTPie"},
	"windowspowershell": {kTool, "PowerShell"},
	"powershell":        {kTool, "PowerShell"},

	// In-app browsers: real users.
	"instagram":        {kInApp, "Instagram"},
	"fban":             {kInApp, "Facebook"},
	"fbav":             {kInApp, "Facebook"},
	"fbios":            {kInApp, "Facebook"},
	"fb4a":             {kInApp, "Facebook"},
	"musical":          {kInApp, "TikTok"}, // musical_ly
	"bytedancewebview": {kInApp, "TikTok"},
	"tiktok":           {kInApp, "TikTok"},
	"trill":            {kInApp, "TikTok"},
	"snapchat":         {kInApp, "Snapchat"},
	"micromessenger":   {kInApp, "WeChat"},
	"line":             {kLine, "LINE"},
	"pinterest":        {kInApp, "Pinterest"},
	"gsa":              {kInApp, "Google App"},
	"telegram":         {kInApp, "Telegram"},
	"kakaotalk":        {kInApp, "KakaoTalk"},

	// Device tokens.
	"mobile":      {kind: kMobile},
	"tablet":      {kind: kTablet},
	"ipad":        {kind: kIPad},
	"iphone":      {kind: kPhone},
	"ipod":        {kind: kPhone},
	"phone":       {kind: kPhone}, // "Windows Phone"
	"android":     {kind: kAndroid},
	"tv":          {kind: kTV},
	"smarttv":     {kind: kTV},
	"crkey":       {kind: kTV},
	"roku":        {kind: kTV},
	"playstation": {kind: kTV},
	"xbox":        {kind: kTV},
	"web0s":       {kind: kTV},
	"mini":        {kind: kOperaMini},

	// Words every browser sends, and look-alikes: nothing to see.
	"cubot":       {}, // a phone maker
	"mozilla":     {},
	"applewebkit": {},
	"khtml":       {},
	"like":        {},
	"gecko":       {},
	"chrome":      {},
	"safari":      {},
	"version":     {},
	"windows":     {},
	"nt":          {},
	"win64":       {},
	"x64":         {},
	"linux":       {},
	"x11":         {},
	"x86":         {},
	"macintosh":   {},
	"intel":       {},
	"mac":         {},
	"os":          {},
	"cpu":         {},
	"build":       {},
	"wv":          {},
	"rv":          {},
	"firefox":     {},
	"compatible":  {},
}
