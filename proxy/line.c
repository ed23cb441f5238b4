/*
 * line: strict CRLF lines and whole-word keyword matching.
 */
#include "line.h"

#include <string.h>
#include <strings.h>

enum line_status
line_next(const char *data, size_t avail, size_t max, size_t *len)
{
	for (size_t i = 0; i < avail; i++) {
		unsigned char c = (unsigned char)data[i];

		if (c == '\r') {
			if (i + 2 > max)
				return LINE_TOO_LONG;
			if (i + 1 == avail)
				return LINE_MORE;	/* the LF may still come */
			if (data[i + 1] != '\n')
				return LINE_BAD;
			*len = i;
			return LINE_OK;
		}
		if (c == '\n' || c == 0x7f || (c < 0x20 && c != '\t'))
			return LINE_BAD;
		if (i + 1 + 2 > max)
			return LINE_TOO_LONG;	/* the text alone is too long */
	}
	return LINE_MORE;
}

bool
line_starts_with_word(const char *text, size_t len, const char *word)
{
	size_t wl = strlen(word);

	return len >= wl && strncasecmp(text, word, wl) == 0 &&
	    (len == wl || text[wl] == ' ');
}

size_t
line_verb(const char *line, size_t len, bool *args)
{
	size_t vl = 0;

	while (vl < len && line[vl] != ' ')
		vl++;
	*args = vl + 1 < len;
	return vl;
}

bool
line_has_word(const char *text, size_t len, const char *word)
{
	size_t i = 0;

	while (i < len) {
		while (i < len && text[i] == ' ')
			i++;
		if (line_starts_with_word(text + i, len - i, word))
			return true;
		while (i < len && text[i] != ' ')
			i++;
	}
	return false;
}
