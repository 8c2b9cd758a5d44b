package device

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// corpus holds real User-Agent strings, as browsers, apps and bots send
// them, with what Classify must say about them.
var corpus = []struct {
	name string
	ua   string
	want Info
}{
	// Desktop browsers.
	{"chrome windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
		Info{Class: Desktop, OS: "Windows", Browser: "Chrome"}},
	{"chrome mac", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
		Info{Class: Desktop, OS: "MacOS", Browser: "Chrome"}},
	{"chrome linux", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
		Info{Class: Desktop, OS: "Linux", Browser: "Chrome"}},
	{"chromeos", "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
		Info{Class: Desktop, OS: "ChromeOS", Browser: "Chrome"}},
	{"firefox windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
		Info{Class: Desktop, OS: "Windows", Browser: "Firefox"}},
	{"firefox mac", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
		Info{Class: Desktop, OS: "MacOS", Browser: "Firefox"}},
	{"firefox ubuntu", "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
		Info{Class: Desktop, OS: "Linux", Browser: "Firefox"}},
	{"safari mac", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
		Info{Class: Desktop, OS: "MacOS", Browser: "Safari"}},
	{"edge windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
		Info{Class: Desktop, OS: "Windows", Browser: "Edge"}},
	{"opera windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 OPR/109.0.0.0",
		Info{Class: Desktop, OS: "Windows", Browser: "Opera"}},
	{"yandex browser", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 YaBrowser/24.4.0.0 Safari/537.36",
		Info{Class: Desktop, OS: "Windows", Browser: "Yandex Browser"}},
	{"ie11", "Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko",
		Info{Class: Desktop, OS: "Windows", Browser: "IE"}},
	{"ipad desktop mode", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
		Info{Class: Desktop, OS: "MacOS", Browser: "Safari"}},

	// Phones.
	{"iphone safari", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
		Info{Class: Mobile, OS: "iOS", Browser: "Safari"}},
	{"iphone chrome", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
		Info{Class: Mobile, OS: "iOS", Browser: "Chrome"}},
	{"iphone firefox", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/125.0 Mobile/15E148 Safari/605.1.15",
		Info{Class: Mobile, OS: "iOS", Browser: "Firefox"}},
	{"android chrome reduced", "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
		Info{Class: Mobile, OS: "Android", Browser: "Chrome"}},
	{"pixel chrome", "Mozilla/5.0 (Linux; Android 14; Pixel 8 Pro) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
		Info{Class: Mobile, OS: "Android", Browser: "Chrome"}},
	{"samsung browser phone", "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
		Info{Class: Mobile, OS: "Android", Browser: "Samsung Browser"}},
	{"firefox android", "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
		Info{Class: Mobile, OS: "Android", Browser: "Firefox"}},
	{"cubot phone", "Mozilla/5.0 (Linux; Android 11; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
		Info{Class: Mobile, OS: "Android", Browser: "Chrome"}},
	{"android webview", "Mozilla/5.0 (Linux; Android 13; SM-A536B Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/124.0.6367.82 Mobile Safari/537.36",
		Info{Class: Mobile, OS: "Android", Browser: "Chrome"}},
	{"miui browser", "Mozilla/5.0 (Linux; U; Android 12; en-us; M2101K6G Build/SKQ1.210908.001) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/112.0.5615.136 Mobile Safari/537.36 XiaoMi/MiuiBrowser/14.6.1-gn",
		Info{Class: Mobile, OS: "Android", Browser: "Chrome"}},
	{"opera mini", "Opera/9.80 (Android; Opera Mini/36.2.2254/119.132; U; id) Presto/2.12.423 Version/12.16",
		Info{Class: Mobile, OS: "Android", Browser: "Opera Mini"}},
	{"edge android", "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 EdgA/124.0.2478.64",
		Info{Class: Mobile, OS: "Android", Browser: "Edge"}},

	// Tablets.
	{"ipad safari", "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
		Info{Class: Tablet, OS: "iOS", Browser: "Safari"}},
	{"ipad chrome", "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
		Info{Class: Tablet, OS: "iOS", Browser: "Chrome"}},
	{"android tablet chrome", "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
		Info{Class: Tablet, OS: "Android", Browser: "Chrome"}},
	{"samsung browser tablet", "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-X906B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Safari/537.36",
		Info{Class: Tablet, OS: "Android", Browser: "Samsung Browser"}},
	{"kindle fire silk", "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/123.3.1 like Chrome/123.0.6312.118 Safari/537.36",
		Info{Class: Tablet, OS: "Android", Browser: "Amazon Silk"}},
	{"firefox android tablet", "Mozilla/5.0 (Android 13; Tablet; rv:125.0) Gecko/125.0 Firefox/125.0",
		Info{Class: Tablet, OS: "Android", Browser: "Firefox"}},

	// Big screens.
	{"samsung smart tv", "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) 76.0.3809.146/6.0 TV Safari/537.36",
		Info{Class: Desktop, OS: "Linux"}}, // the library names no browser for Tizen
	{"xbox", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox One) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edge/44.18363.8131",
		Info{Class: Desktop, OS: "Windows", Browser: "Edge"}},

	// In-app browsers: real users.
	{"instagram ios", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 327.0.2.29.96 (iPhone15,3; iOS 17_4; en_US; en; scale=3.00; 1290x2796; 585296349)",
		Info{Class: Mobile, OS: "iOS", Browser: "Instagram"}},
	{"instagram android", "Mozilla/5.0 (Linux; Android 13; SM-G991B Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/124.0.6367.82 Mobile Safari/537.36 Instagram 327.0.0.42.100 Android (33/13; 420dpi; 1080x2176; samsung; SM-G991B; o1s; exynos2100; en_US; 583163547)",
		Info{Class: Mobile, OS: "Android", Browser: "Instagram"}},
	{"facebook ios", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/460.0.0.35.107;FBBV/583432432;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;FBSV/17.4;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5;FBRV/585005484]",
		Info{Class: Mobile, OS: "iOS", Browser: "Facebook"}},
	{"facebook android", "Mozilla/5.0 (Linux; Android 14; Pixel 7 Build/UQ1A.240205.004; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/122.0.6261.119 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/454.0.0.44.109;]",
		Info{Class: Mobile, OS: "Android", Browser: "Facebook"}},
	{"facebook ipad", "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/460.0.0.35.107;FBBV/583432432;FBDV/iPad13,1;FBMD/iPad;FBSN/iPadOS;FBSV/17.4;FBSS/2;FBID/tablet;FBLC/en_US;FBOP/5]",
		Info{Class: Tablet, OS: "iOS", Browser: "Facebook"}},
	{"tiktok ios", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 musical_ly_34.1.0 JsSdk/2.0 NetType/WIFI Channel/App Store ByteLocale/en Region/US ByteFullLocale/en-US isDarkMode/0 WKWebView/1 BytedanceWebview/d8a21c6",
		Info{Class: Mobile, OS: "iOS", Browser: "TikTok"}},
	{"snapchat ios", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Snapchat/12.85.0.38 (like Safari/8617.2.4.10.8, panda)",
		Info{Class: Mobile, OS: "iOS", Browser: "Snapchat"}},
	{"line ios", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari Line/14.5.0",
		Info{Class: Mobile, OS: "iOS", Browser: "LINE"}},
	{"wechat ios", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN",
		Info{Class: Mobile, OS: "iOS", Browser: "WeChat"}},
	{"pinterest app", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [Pinterest/iOS]",
		Info{Class: Mobile, OS: "iOS", Browser: "Pinterest"}},
	{"google app ios", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) GSA/310.0.620883050 Mobile/15E148 Safari/604.1",
		Info{Class: Mobile, OS: "iOS", Browser: "Google App"}},
	{"telegram android", "Mozilla/5.0 (Linux; Android 14; SM-S911B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/124.0.6367.82 Mobile Safari/537.36 Telegram-Android/10.12.0 (Samsung SM-S911B; Android 14; SDK 34; HIGH)",
		Info{Class: Mobile, OS: "Android", Browser: "Telegram"}},

	// Link-preview and chat-unfurl fetchers.
	{"slackbot", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
		Info{Class: Bot, Browser: "Slackbot", Bot: true, Preview: true}},
	{"slack imgproxy", "Slack-ImgProxy (+https://api.slack.com/robots)",
		Info{Class: Bot, Browser: "Slack-ImgProxy", Bot: true, Preview: true}},
	{"facebookexternalhit", "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
		Info{Class: Bot, Browser: "facebookexternalhit", Bot: true, Preview: true}},
	{"imessage", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0",
		Info{Class: Bot, Browser: "facebookexternalhit", Bot: true, Preview: true}},
	{"twitterbot", "Twitterbot/1.0",
		Info{Class: Bot, Browser: "Twitterbot", Bot: true, Preview: true}},
	{"whatsapp android", "WhatsApp/2.23.20.0 A",
		Info{Class: Bot, Browser: "WhatsApp", Bot: true, Preview: true}},
	{"whatsapp ios", "WhatsApp/2.24.8.78 i",
		Info{Class: Bot, Browser: "WhatsApp", Bot: true, Preview: true}},
	{"telegrambot", "TelegramBot (like TwitterBot)",
		Info{Class: Bot, Browser: "TelegramBot", Bot: true, Preview: true}},
	{"discordbot", "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
		Info{Class: Bot, Browser: "Discordbot", Bot: true, Preview: true}},
	{"linkedinbot", "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
		Info{Class: Bot, Browser: "LinkedInBot", Bot: true, Preview: true}},
	{"skype teams", "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5 skype-url-preview@microsoft.com",
		Info{Class: Bot, Browser: "SkypeUriPreview", Bot: true, Preview: true}},
	{"pinterestbot", "Mozilla/5.0 (compatible; Pinterestbot/1.0; +http://www.pinterest.com/bot.html)",
		Info{Class: Bot, Browser: "Pinterestbot", Bot: true, Preview: true}},
	{"redditbot", "Mozilla/5.0 (compatible; redditbot/1.0; +http://www.reddit.com/feedback)",
		Info{Class: Bot, Browser: "redditbot", Bot: true, Preview: true}},
	{"mastodon", "http.rb/5.1.1 (Mastodon/4.2.8; +https://mastodon.social/)",
		Info{Class: Bot, Browser: "Mastodon", Bot: true, Preview: true}},
	{"bluesky", "Mozilla/5.0 (compatible; Bluesky Cardyb/1.1; +mailto:support@bsky.app)",
		Info{Class: Bot, Browser: "Bluesky", Bot: true, Preview: true}},
	{"vkshare", "Mozilla/5.0 (compatible; vkShare; +http://vk.com/dev/Share)",
		Info{Class: Bot, Browser: "vkShare", Bot: true, Preview: true}},
	{"snap preview", "Mozilla/5.0 (Linux; Android 9; SM-G950F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/89.0 Mobile Safari/537.36 Snap URL Preview Service; bot; snapchat; https://developers.snap.com/robots",
		Info{Class: Bot, Browser: "Preview", Bot: true, Preview: true}},

	// Crawlers.
	{"googlebot", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
		Info{Class: Bot, Browser: "Googlebot", Bot: true}},
	{"googlebot smartphone", "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.118 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
		Info{Class: Bot, Browser: "Googlebot", Bot: true}},
	{"adsbot", "AdsBot-Google (+http://www.google.com/adsbot.html)",
		Info{Class: Bot, Browser: "AdsBot", Bot: true}},
	{"google inspection", "Mozilla/5.0 (compatible; Google-InspectionTool/1.0;)",
		Info{Class: Bot, Browser: "Google", Bot: true}},
	{"bingbot", "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
		Info{Class: Bot, Browser: "bingbot", Bot: true}},
	{"yandexbot", "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
		Info{Class: Bot, Browser: "YandexBot", Bot: true}},
	{"baiduspider", "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
		Info{Class: Bot, Browser: "Baiduspider", Bot: true}},
	{"applebot", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
		Info{Class: Bot, Browser: "Applebot", Bot: true}},
	{"duckduckbot", "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
		Info{Class: Bot, Browser: "DuckDuckBot", Bot: true}},
	{"gptbot", "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
		Info{Class: Bot, Browser: "GPTBot", Bot: true}},
	{"ahrefs", "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
		Info{Class: Bot, Browser: "AhrefsBot", Bot: true}},
	{"yahoo slurp", "Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
		Info{Class: Bot, Browser: "Slurp", Bot: true}},
	{"headless chrome", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36",
		Info{Class: Bot, Browser: "HeadlessChrome", Bot: true}},
	{"lighthouse", "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
		Info{Class: Bot, Browser: "Lighthouse", Bot: true}},
	{"uptimerobot", "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
		Info{Class: Bot, Browser: "UptimeRobot", Bot: true}},

	// harden #14: command-line clients and API tools a person drives are
	// not bots (a new user's first click is often curl's).
	{"curl", "curl/8.5.0", Info{Class: Unknown, Browser: "curl"}},
	{"wget", "Wget/1.21.4", Info{Class: Unknown, Browser: "Wget"}},
	{"postman", "PostmanRuntime/7.37.3", Info{Class: Unknown, Browser: "Postman"}},
	{"httpie", "HTTPie/3.2.2", Info{Class: Unknown, Browser: "HTTPie"}},
	{"powershell", "Mozilla/5.0 (Windows NT 10.0; Microsoft Windows 10.0.19045; en-US) PowerShell/7.4.1", Info{Class: Unknown, Browser: "PowerShell"}},
	{"insomnia", "insomnia/2023.5.8", Info{Class: Unknown, Browser: "Insomnia"}},
	{"curl inside a crawler's UA", "Mozilla/5.0 (compatible; Zqbot/1.0) curl/8.5.0", Info{Class: Bot, Browser: "Zqbot", Bot: true}},

	// HTTP libraries: bots, not previews.
	{"libcurl", "PHP/8.2 libcurl/8.5.0", Info{Class: Bot, Browser: "PHP", Bot: true}},
	{"python-requests", "python-requests/2.31.0", Info{Class: Bot, Browser: "Python", Bot: true}},
	{"python-urllib", "Python-urllib/3.11", Info{Class: Bot, Browser: "Python", Bot: true}},
	{"aiohttp", "Python/3.12 aiohttp/3.9.5", Info{Class: Bot, Browser: "Python", Bot: true}},
	{"httpx", "python-httpx/0.27.0", Info{Class: Bot, Browser: "Python", Bot: true}},
	{"go http client", "Go-http-client/1.1", Info{Class: Bot, Browser: "HTTP client", Bot: true}},
	{"go http client 2", "Go-http-client/2.0", Info{Class: Bot, Browser: "HTTP client", Bot: true}},
	{"okhttp", "okhttp/4.12.0", Info{Class: Bot, Browser: "okhttp", Bot: true}},
	{"java", "Java/17.0.10", Info{Class: Bot, Browser: "Java", Bot: true}},
	{"apache httpclient", "Apache-HttpClient/4.5.14 (Java/17.0.10)", Info{Class: Bot, Browser: "Java", Bot: true}},
	{"axios", "axios/1.6.8", Info{Class: Bot, Browser: "Node.js", Bot: true}},
	{"node-fetch", "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", Info{Class: Bot, Browser: "Node.js", Bot: true}},
	{"libwww-perl", "libwww-perl/6.76", Info{Class: Bot, Browser: "Perl", Bot: true}},
	{"ruby", "Ruby", Info{Class: Bot, Browser: "Ruby", Bot: true}},
	{"dart", "Dart/3.3 (dart:io)", Info{Class: Bot, Browser: "Dart", Bot: true}},
	{"scrapy", "Scrapy/2.11.1 (+https://scrapy.org)", Info{Class: Bot, Browser: "Python", Bot: true}},
	{"guzzle", "GuzzleHttp/7", Info{Class: Bot, Browser: "PHP", Bot: true}},

	// Nothing to go on.
	{"empty", "", Info{Class: Unknown}},
	{"blank", "   ", Info{Class: Unknown}},
	{"dash", "-", Info{Class: Unknown}},
	{"digits", "1.2.3", Info{Class: Unknown}},
	{"bare mozilla", "Mozilla/5.0", Info{Class: Unknown}},
	{"made up", "SomeApp/1.0", Info{Class: Unknown}},
}

func TestClassifyCorpus(t *testing.T) {
	for _, tt := range corpus {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.ua); got != tt.want {
				t.Errorf("Classify(%q)\n got %+v\nwant %+v", tt.ua, got, tt.want)
			}
		})
	}
}

func TestClassifyCorpusSize(t *testing.T) {
	classes := map[string]int{}
	for _, tt := range corpus {
		classes[tt.want.Class]++
	}
	if len(corpus) < 40 {
		t.Errorf("corpus has %d User-Agents, want at least 40", len(corpus))
	}
	for _, c := range []string{Desktop, Mobile, Tablet, Bot, Unknown} {
		if classes[c] == 0 {
			t.Errorf("corpus has no %s User-Agent", c)
		}
	}
}

func TestClassifyCaseInsensitive(t *testing.T) {
	for _, ua := range []string{"PYTHON-REQUESTS/2.0", "SLACKBOT 1.0", "googlebot/2.1", "WHATSAPP/2.0"} {
		if got := Classify(ua); !got.Bot {
			t.Errorf("Classify(%q) = %+v, want a bot", ua, got)
		}
	}
	// Words match whole: these contain bot names inside other words.
	for _, ua := range []string{
		"Mozilla/5.0 (Linux; Android 12; CUBOT KINGKONG 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1 Online",
	} {
		if got := Classify(ua); got.Bot || got.Browser == "LINE" {
			t.Errorf("Classify(%q) = %+v, want a plain mobile browser", ua, got)
		}
	}
}

func TestClassifyLongUserAgent(t *testing.T) {
	prefix := "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
	// Past MaxLen nothing counts, not even a bot token.
	long := prefix + strings.Repeat("x", MaxLen) + " Googlebot/2.1"
	if got := Classify(long); got.Class != Mobile || got.Bot {
		t.Errorf("Classify(long) = %+v, want mobile: the tail past MaxLen is ignored", got)
	}
	// A very long word is no table word, but a bot suffix still counts.
	longBot := prefix + strings.Repeat("A", 40) + "Bot/1.0"
	if got := Classify(longBot); !got.Bot || got.Browser != strings.Repeat("A", 40)+"Bot" {
		t.Errorf("Classify(long bot word) = %+v, want bot named by the word", got)
	}
}

func TestClassifyConcurrent(t *testing.T) {
	done := make(chan bool)
	for g := range 4 {
		go func() {
			ok := true
			for i := range 200 {
				tt := corpus[(g*7+i)%len(corpus)]
				if Classify(tt.ua) != tt.want {
					ok = false
				}
			}
			done <- ok
		}()
	}
	for range 4 {
		if !<-done {
			t.Error("concurrent Classify disagreed with the corpus")
		}
	}
}

func FuzzClassify(f *testing.F) {
	for _, tt := range corpus {
		f.Add(tt.ua)
	}
	f.Add("\xff\xfe(Android; \x00 Mobile")
	f.Fuzz(func(t *testing.T, ua string) {
		got := Classify(ua)
		switch got.Class {
		case Desktop, Mobile, Tablet, Unknown:
			if got.Bot || got.Preview {
				t.Fatalf("Classify(%q) = %+v: class %s with Bot or Preview", ua, got, got.Class)
			}
		case Bot:
			if !got.Bot {
				t.Fatalf("Classify(%q) = %+v: class bot without Bot", ua, got)
			}
		default:
			t.Fatalf("Classify(%q) = %+v: unknown class", ua, got)
		}
		if got.Preview && !got.Bot {
			t.Fatalf("Classify(%q) = %+v: Preview without Bot", ua, got)
		}
		// Classification depends only on the first MaxLen bytes.
		if len(ua) > MaxLen && Classify(ua[:MaxLen]) != got {
			t.Fatalf("Classify(%q) depends on bytes past MaxLen", ua)
		}
	})
}

func BenchmarkClassify(b *testing.B) {
	Warm()
	groups := map[string][]string{}
	for _, tt := range corpus {
		groups[tt.want.Class] = append(groups[tt.want.Class], tt.ua)
		groups["all"] = append(groups["all"], tt.ua)
	}
	for _, name := range []string{"all", Desktop, Mobile, Tablet, Bot} {
		uas := groups[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				Classify(uas[i%len(uas)])
				i++
			}
		})
	}
	b.Run("uncached", func(b *testing.B) {
		b.ReportAllocs()
		uas := groups["all"]
		i := 0
		for b.Loop() {
			classify(uas[i%len(uas)])
			i++
		}
	})
	// The cost of each part, for the same input.
	ua := corpus[0].ua
	b.Run("parts/scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var s scan
			s.run(ua)
		}
	})
	b.Run("parts/library", func(b *testing.B) {
		b.ReportAllocs()
		p := parser()
		for b.Loop() {
			p.Parse(ua)
		}
	})
}

func TestClassifyDoesNotAllocate(t *testing.T) {
	Warm()
	for _, tt := range corpus {
		if n := testing.AllocsPerRun(20, func() { Classify(tt.ua) }); n != 0 {
			t.Errorf("Classify(%q) allocates %.1f times, want 0", tt.ua, n)
		}
	}
}

// The cache returns exactly what the classifier does, also when entries
// evict each other.
func TestClassifyCacheMatchesClassifier(t *testing.T) {
	Warm()
	for round := range 3 {
		for _, tt := range corpus {
			if got, want := Classify(tt.ua), classify(tt.ua); got != want {
				t.Fatalf("round %d: Classify(%q) = %+v, uncached %+v", round, tt.ua, got, want)
			}
		}
	}
	// More distinct user agents than slots: collisions replace entries.
	for i := range 3 * cacheSize {
		ua := fmt.Sprintf("Mozilla/5.0 (X11; Linux x86_64) Chrome/%d.0 Safari/537.36", i)
		if i%2 == 0 {
			ua = fmt.Sprintf("Mozilla/5.0 (iPhone; CPU iPhone OS 17_%d like Mac OS X) Mobile/15E148 Safari/604.1", i)
		}
		if got, want := Classify(ua), classify(ua); got != want {
			t.Fatalf("Classify(%q) = %+v, uncached %+v", ua, got, want)
		}
	}
}

// harden #1: Classify keeps nothing of its argument. fasthttp hands the edge
// the User-Agent as a view of a buffer it reuses for the next request; a
// cache entry (or a bot name cut out of the UA) pointing into that buffer
// changes under the requests that later hit the entry.
func TestClassifyKeepsNoViewOfItsArgument(t *testing.T) {
	Warm()
	// A bot named by a word of its own, so that Browser is cut out of
	// the User-Agent, and a suffix that makes the string new to the cache.
	ua := fmt.Sprintf("Mozilla/5.0 (compatible; Zqxwvbot/2.1; +https://zq.example/%d)", time.Now().UnixNano())
	want := classify(ua)
	if want.Browser != "Zqxwvbot" {
		t.Fatalf("classify(%q).Browser = %q, want Zqxwvbot", ua, want.Browser)
	}
	buf := []byte(ua) // request A's header buffer
	view := unsafe.String(unsafe.SliceData(buf), len(buf))
	first := Classify(view)
	later := Classify(strings.Clone(ua)) // request B, same UA: a cache hit
	// Request A is over: its buffer takes the next request's bytes.
	copy(buf, strings.Repeat("x", len(buf)))
	if first != want {
		t.Errorf("Classify(view of %q) = %+v after the caller reused its buffer, want %+v", ua, first, want)
	}
	if later != want {
		t.Errorf("Classify(%q) (cache hit) = %+v after another caller reused its buffer, want %+v", ua, later, want)
	}
	if got := Classify(ua); got != want {
		t.Errorf("Classify(%q) = %+v after the first caller's buffer changed, want %+v", ua, got, want)
	}
}
