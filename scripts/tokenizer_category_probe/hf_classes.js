// Letter / number classification per HF's pre-tokenizer (npm @anush008/tokenizers), same format as pcre2_classes.c. See compare.py.
const tk = require(require('path').join(__dirname, '..', '..', 'node_modules', '@anush008', 'tokenizers'));
const t = tk.Tokenizer.fromFile(require('path').join(__dirname, '..', '..', 'tests', 'data', 'tokenizer', 'qwen3', 'tokenizer.json'));
const pt = t.getPreTokenizer();
const L = [], N = [];
for (let c = 0; c < 0x110000; ++c) {
  if (c >= 0xd800 && c <= 0xdfff) continue;
  const ch = String.fromCodePoint(c);
  if (pt.preTokenizeString('x' + ch + 'x').length === 1) L.push(c.toString(16));
  else if (pt.preTokenizeString(ch + ch).length === 2 && pt.preTokenizeString('!' + ch).length === 2 && pt.preTokenizeString(' ' + ch).length === 2) N.push(c.toString(16));
}
console.log('L ' + L.join(' ')); console.log('N ' + N.join(' '));
