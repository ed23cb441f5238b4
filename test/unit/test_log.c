/* log: event lines escape values the same way in text and JSON. */
#include "log.h"
#include "unit.h"

void
test_log(void)
{
	struct logline ll;

	log_setup(LOG_LVL_INFO, LOG_FMT_TEXT);
	logline_init(&ll);
	logline_num(&ll, "sess", 7);
	logline_str(&ll, "event", "close");
	logline_str(&ll, "detail", "a \"quoted\" value\n");
	logline_str(&ll, "sni", NULL);
	CHECK(strcmp(ll.text, "sess=7 event=close detail=\"a \\\"quoted\\\" "
	    "value\\x0a\" sni=-") == 0);

	log_setup(LOG_LVL_INFO, LOG_FMT_JSON);
	logline_init(&ll);
	logline_num(&ll, "sess", 7);
	logline_str(&ll, "detail", "tab\there \\ \"q\"");
	CHECK(strcmp(ll.text, "\"sess\":7,\"detail\":\"tab\\u0009here \\\\ "
	    "\\\"q\\\"\"") == 0);
	log_setup(LOG_LVL_INFO, LOG_FMT_TEXT);
	CHECK(log_enabled(LOG_LVL_WARN));
	CHECK(!log_enabled(LOG_LVL_DEBUG));
}
