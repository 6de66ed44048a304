# Embeds a text file as a NUL-terminated C array: cmake -DIN=<file> -DOUT=<file.c> -DNAME=<symbol>
# -P embed.cmake. Used for query/page.html so the page stays an ordinary, editable HTML file.
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
string(REGEX REPLACE "(0x[0-9a-f][0-9a-f],){16}" "\\0\n" hex "${hex}")
file(WRITE "${OUT}" "/* Generated from ${IN} by query/embed.cmake; do not edit. */\n"
                    "const char ${NAME}[] = {\n${hex}0x00};\n")
