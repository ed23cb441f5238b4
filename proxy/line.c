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
line_count(const char *p, size_t len, uint64_t *value)
{
	uint64_t v = 0;

	if (len == 0 || len > 19)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	*value = v;
	return true;
}

bool
line_imap_literal(const char *line, size_t len, uint64_t *size)
{
	size_t end, open;

	if (len < 3 || line[len - 1] != '}')
		return false;
	end = len - 1;
	if (line[end - 1] == '+')
		end--;
	for (open = end; open > 0 && line[open - 1] >= '0' &&
	    line[open - 1] <= '9'; open--)
		;
	if (open == 0 || open == end || line[open - 1] != '{')
		return false;
	if (!line_count(line + open, end - open, size))
		*size = UINT64_MAX;	/* absurdly long: still a literal */
	return true;
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
