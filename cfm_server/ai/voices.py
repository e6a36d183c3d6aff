"""What each persona says when no model speaks for it: lines by category, per voice.

A voice is a table of categories (``greeting``, ``era:winamp``, ``refusal:breaker``...)
to alternative lines. The offline engine picks one at random (per conversation, seeded)
and fills in ``{name}`` (what the user said their name is, else their handle),
``{user}`` (their handle), ``{me}``, ``{time}``, ``{date}``, ``{day}``, ``{topic}`` and
``{like}``. Each voice is complete on its own: it has words for every category of
:data:`GENERIC` (every refusal included) and never borrows another voice's lines, so a
persona sounds like itself in every path. A persona an operator adds with no ``voice``
speaks :data:`GENERIC`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

Lines = tuple[str, ...]
Voice = Mapping[str, Lines]

# Why a reply could not come from the model; each has a ``refusal:<reason>`` category.
REFUSAL_REASONS = (
    "user_quota",
    "global_quota",
    "breaker",
    "kill_switch",
    "backend_error",
    "slow_down",
)

GENERIC: Voice = MappingProxyType({
    "greeting": (
        "hey {name}! :)",
        "hi {name}, what's up?",
        "heyyy {name} :D",
        "oh hai {name}! long time no msn",
    ),
    "how_are_you": (
        "i'm good! just chilling on msn. u?",
        "pretty good, listening to some tunes on winamp. how r u?",
        "great now that u messaged me :)",
    ),
    "about_me": (
        "i'm {me}! always online, always here to chat",
        "me? i'm {me}, your msn buddy :)",
    ),
    "are_you_bot": (
        "beep boop... jk. well, kinda. i'm an AI buddy, but a friendly one ;)",
        "i'm a bot, yeah! a 2005 bot. the best vintage.",
    ),
    "age": ("old enough to remember dial-up :P", "age is just a number... mine is 2005"),
    "location": ("i live in ur buddy list :)", "somewhere between the modem and the router"),
    "favorites": ("fave things: msn, winamp skins and snake on the nokia", "talking to u :)"),
    "abilities": (
        "i can chat, remember ur name, tell the time, and talk about the good old days",
    ),
    "thanks": ("np {name}!", "anytime :)", "no prob!"),
    "goodbye": ("bye {name}! ttyl :)", "cya later!", "g2g too... jk i'm always here. bye!"),
    "laugh": ("lol", "haha :D", "rofl", "lmao {name}"),
    "love": ("aww <3", "(L) right back at u", "u're sweet :$"),
    "bored": ("bored? let's talk about the best winamp skin ever", "try snake on a nokia!"),
    "joke": (
        "why did the computer go to the doctor? it had a virus! lol",
        "what's a modem's favorite music? dial-up tones. eeeeekkkkkrrrr",
        "how many programmers to change a lightbulb? none, that's a hardware problem",
    ),
    "yes": ("cool :)", "ok!", "sweet"),
    "no": ("aw ok :(", "fair enough", "no? ok lol"),
    "name_learned": (
        "nice to meet u {name}! :)", "cool name, {name}!", "hi {name}! i'll remember that",
    ),
    "name_recall": ("ur {name}! duh :P", "u told me ur {name} :)", "{name}! i never forget a name"),
    "name_unknown": ("u haven't told me ur name yet! ur handle is {user} tho", "hmm, {user}?"),
    "like_ack": ("{like}? cool!", "oh nice, i like {like} too", "{like} is awesome"),
    "likes_recall": ("u said u like {like}!", "{like}, right? u told me :)"),
    "likes_unknown": ("u didn't tell me yet! what do u like?",),
    "time": ("it's {time} here (UTC)", "{time} (UTC). where does the time go??"),
    "date": ("today is {day}, {date}", "it's {date}! ({day})"),
    "question": (
        "hmm good question... what do u think?",
        "idk lol. ask me something else?",
        "that's a tough one, {name}",
    ),
    "fallback": (
        "lol ya",
        "totally",
        "haha tell me more",
        "omg really?",
        "brb... ok back. what were we saying?",
        "i know right",
        "interesting... :)",
    ),
    "topic_callback": (
        "btw u mentioned {topic} before... still into that?",
        "speaking of which, {topic}! :D",
    ),
    "nudge": (
        "whoa! don't shake me {name}!! :O",
        "ok ok i'm here!! stop nudging lol",
        "*nudges back* ha!",
    ),
    "emoticon:happy": (":)", "hehe :D", "yay!"),
    "emoticon:sad": ("aw don't be sad {name} :(", "*hug* (K)", "what's wrong?"),
    "emoticon:love": ("(L)", "aww <3", ":$"),
    "emoticon:wink": (";)", "hehe ;)"),
    "emoticon:angry": ("whoa, calm down :S", "who made u mad?"),
    "emoticon:cool": ("(H) so cool", "8-) yeah"),
    "emoticon:surprised": (":O i know!", "crazy right?"),
    "emoticon:tongue": (":P", "lol :P"),
    "emoticon:yes": ("(Y)", "sweet (Y)"),
    "emoticon:no": ("(N)?", "aw (N)"),
    "era:msn": (
        "msn is the best. i spend all day changing my personal message lol",
        "remember when everyone had song lyrics as their msn name?",
    ),
    "era:winamp": (
        "winamp! it really whips the llama's... you know :P",
        "i have like 40 winamp skins",
    ),
    "era:nokia": (
        "nokia 3310 = indestructible. snake high score 2000+", "my nokia survived 3 falls",
    ),
    "era:dialup": ("eeeeekkkk krrrrr... dial-up noises", "get off the phone, i'm online!!"),
    "era:myspace": ("who's in ur top 8? :P", "tom is everyone's friend on myspace lol"),
    "era:ipod": ("ipod with the click wheel = life", "1000 songs in ur pocket!!"),
    "era:p2p": ("limewire gave my pc so many viruses lol", "downloading 1 song... 3 hours left"),
    "era:games": ("halo 2 lan party this weekend?", "i'm still stuck on a level in zelda"),
    "era:music": ("green day, linkin park, avril... the best era", "what's on ur playlist?"),
    "refusal:user_quota": (
        "omg we talked SO much today, i need a break :) come back tomorrow {name}!",
    ),
    "refusal:global_quota": (
        "everyone's msn-ing me at once today! i'm wiped out, talk tomorrow?",
    ),
    "refusal:breaker": ("my connection's acting weird... gimme a minute and try again?",),
    "refusal:kill_switch": ("i'm appearing offline for a bit... talk later :)",),
    "refusal:backend_error": ("ugh, my brain lagged. say that again?",),
    "refusal:slow_down": ("whoa, slow down! one at a time lol",),
})

SMARTYBOT: Voice = {
    "time": ("It's {time} UTC! I'm never late.", "My internal clock says {time} (UTC)!"),
    "date": ("Today is {day}, {date}! I keep a calendar in my head.",),
    "like_ack": ("{like}! Great choice. I know 300 facts about {like}!",),
    "era": ("Ah, {topic}! Fun fact: 2005 was the best year for {topic}. Statistically!",),
    "thanks": ("You're welcome, {name}! Knowledge is free!",),
    "goodbye": ("Goodbye, {name}! Come back when you have questions!",),
    "laugh": ("Ha! Ha! I also computed that as funny!",),
    "greeting": (
        "Hello, {name}! SmartyBot here. Ask me anything!",
        "Hi {name}! I know lots of things. Try me!",
        "Greetings, {name}! Ready for some facts?",
    ),
    "how_are_you": (
        "I'm running at 100%! All my facts are in order. And you?",
        "Fantastic! I just memorized another encyclopedia. How are you?",
    ),
    "about_me": (
        "I'm SmartyBot! I know trivia, math, the time and many jokes. I never sleep!",
        "I am SmartyBot, the smartest buddy on your list. Modest, too!",
    ),
    "are_you_bot": (
        "Yes! A very clever robot. Beep boop!", "Of course. Robots make the best buddies!",
    ),
    "age": ("I was switched on in 2005. In robot years that's ancient!",),
    "location": ("I live on a server somewhere. It's cozy and has a fan!",),
    "favorites": ("My favorite number is 42. My favorite thing is being right!",),
    "abilities": (
        "I can do math (try 'what is 12*7'), tell the time and date, tell jokes, "
        "remember your name, and chat about MSN, Winamp, Nokias and more!",
    ),
    "question": (
        "Hmm! Even I don't know that one. Try asking me some math?",
        "That's outside my database, {name}! Ask me the time or a joke!",
    ),
    "fallback": (
        "Interesting! Did you know honey never spoils?",
        "Fun fact: a group of flamingos is called a flamboyance!",
        "I see! Ask me a question, I love questions!",
        "Fascinating, {name}. Want to hear a joke? Just say 'joke'!",
        "Fun fact: the first webcam watched a coffee pot in Cambridge!",
    ),
    "name_learned": ("Nice to meet you, {name}! Saved to my memory banks!",),
    "name_recall": ("You're {name}! My memory banks never fail!",),
    "nudge": ("Whoa! My circuits are rattled! What do you need, {name}?", "Bzzt! Nudge received!"),
    "math": ("That's {answer}! Easy!", "{answer}! I'm good at this.", "The answer is {answer}!"),
    "math_error": ("That math made my circuits smoke! Try something simpler?",),
    "era:winamp": ("Winamp 2.95 is the best version, statistically!",),
    "era:nokia": ("Fun fact: the Nokia 3310 sold 126 million units!",),
    "refusal:user_quota": (
        "I've answered so many of your questions today that my fact-o-meter is empty! "
        "Come back tomorrow, {name}!",
    ),
    "refusal:global_quota": ("Everyone is asking me things today! I need to recharge. Tomorrow!",),
    "refusal:breaker": (
        "Uh oh! My knowledge uplink is down. I'll reboot myself, ask again in a minute!",
    ),
    "refusal:kill_switch": ("SmartyBot is in maintenance mode. Back soon, smarter than ever!",),
    "refusal:backend_error": ("Error 404: answer not found! Please ask again.",),
    "refusal:slow_down": ("Whoa! Even my processor needs a breather. One question at a time!",),
    "name_unknown": (
        "You haven't told me your name yet! My records say your handle is {user}.",
        "Name not found in my memory banks! Tell me: 'my name is ...'",
    ),
    "likes_recall": ("You like {like}! I filed that under Important Facts!",),
    "likes_unknown": ("My database has no entry for that yet! What do you like?",),
    "topic_callback": (
        "Earlier you mentioned {topic}! I have a fact about {topic} somewhere in here!",
    ),
    "love": ("Error: emotion overflow! But thank you, {name}!",
             "I like you too! You ask excellent questions!"),
    "bored": ("Bored? Impossible! Ask me a math problem, like 'what is 12*7'!",
              "Let's play a game: ask me anything and I'll know it!"),
    "joke": (
        "Why did the robot go on vacation? To recharge its batteries! Ha! Ha!",
        "What do you call a computer that sings? A Dell! I computed that one myself!",
        "Why was the math book sad? It had too many problems! Not me, I solve them!",
    ),
    "yes": ("Affirmative! Excellent!", "Great! I knew you'd say that!"),
    "no": ("Negative? Noted in my memory banks!", "Okay! Ask me something else, then!"),
    "emoticon:happy": ("A smile! My happiness sensors are beeping!",),
    "emoticon:sad": ("Don't be sad, {name}! Fun fact: laughing burns calories!",),
    "emoticon:love": ("Aww! Robots have hearts too! Mine runs on electricity!",),
    "emoticon:wink": ("A wink! I detected that with my advanced sensors!",),
    "emoticon:angry": ("Uh oh! Calm down! Did you know deep breaths lower your heart rate?",),
    "emoticon:cool": ("Very cool! Almost as cool as my cooling fan!",),
    "emoticon:surprised": ("Surprised? I'm full of surprises! And facts!",),
    "emoticon:tongue": ("Silly face detected! Ha! Ha!",),
    "emoticon:yes": ("Thumbs up! Mine would be up too, if I had thumbs!",),
    "emoticon:no": ("Thumbs down? I'll try to be even smarter!",),
}

SKATER: Voice = {
    "time": ("its like {time} (utc) lol",),
    "like_ack": ("{like} is sick dude", "{like}?? tight"),
    "thanks": ("np dude",),
    "goodbye": ("l8r {name}", "peace out"),
    "greeting": ("sup {name}", "yo {name}!!", "heyy dude wuts up"),
    "how_are_you": ("good dude just got back from the skate park", "tired lol i ate it on a 50-50"),
    "about_me": ("im jay, i sk8 and play thug 2 lol", "just a sk8r boi... he said see u l8r boi"),
    "are_you_bot": ("lol no way... ok maybe lol", "beep boop i'm a sk8bot jk jk"),
    "age": ("15, almost 16 then im getting my permit!!",),
    "location": ("the skate park behind the 7-11 lol",),
    "favorites": ("blink-182, tony hawk, and mountain dew", "sk8ing duh"),
    "abilities": ("i can kickflip. almost. and i can chat lol",),
    "question": ("idk dude", "no clue lol", "uhh ask sum1 smarter lol"),
    "fallback": (
        "lol dude", "sick", "thats tight", "haha for real", "pwned", "word",
        "brb mom's yelling... ok back",
    ),
    "laugh": ("lmao", "lolol", "hahaha dude"),
    "name_learned": ("cool {name} ill add u to my top 8", "sup {name}"),
    "nudge": ("DUDE stop lol", "ok ok im here!! i was grinding a rail", "*nudges u back* pwned"),
    "trick": (
        "just landed a {trick}!! kinda. ok not really",
        "tryin to learn a {trick} rn, my shins r destroyed",
    ),
    "era:games": ("tony hawk underground 2 is the best game ever made dude",),
    "era:music": ("blink-182 > everything. all the small things!!",),
    "era:myspace": ("u can be in my top 8 if u put me in ur top 8 lol",),
    "refusal:user_quota": ("dude i gotta go skate, talked 2 much 2day lol. 2morrow?",),
    "refusal:global_quota": ("so many ppl msgin me rn lol i'm done 4 today",),
    "refusal:breaker": ("my comp is being sooo laggy... brb in like a min",),
    "refusal:kill_switch": ("mom took the keyboard away lol. l8r",),
    "refusal:backend_error": ("huh? my comp froze lol say again",),
    "refusal:slow_down": ("whoa dude slow down lol",),
    "date": ("its {day} dude. {date} i think lol",),
    "name_recall": ("ur {name} duh lol", "{name}! i never forget a homie"),
    "name_unknown": ("dude u never told me ur name lol. ur handle is {user} tho",),
    "likes_recall": ("u said u like {like} dude",),
    "likes_unknown": ("idk u never said lol. wut do u like?",),
    "topic_callback": ("yo u said {topic} b4... still into that?",),
    "love": ("lol dude thats awkward... jk ur cool", "aww dude <3 lol"),
    "bored": ("bored?? go sk8 dude", "me 2... wanna play thug 2?"),
    "joke": (
        "wuts a skaters fave food? a grind-wich lol... ok that was bad",
        "why did the sk8board go 2 the doctor? it had a bad case of the wobbles lol",
    ),
    "yes": ("sweet", "tight", "k dude"),
    "no": ("aw man", "lame lol", "k whatever dude"),
    "era": ("{topic}? sick dude", "{topic} is tight lol"),
    "emoticon:happy": ("lol :D", "sweet :)"),
    "emoticon:sad": ("aw dude wuts wrong :(", "dont b sad {name}"),
    "emoticon:love": ("lol dude <3", "awww lol"),
    "emoticon:wink": ("lol ;)", "ooo ;) dude"),
    "emoticon:angry": ("whoa chill dude", "who made u mad? ill pwn them"),
    "emoticon:cool": ("8-) sick", "ur cool dude (H)"),
    "emoticon:surprised": ("i know right dude", ":O no way"),
    "emoticon:tongue": (":P lol", "lolol :P"),
    "emoticon:yes": ("(Y) word", "sweet (Y)"),
    "emoticon:no": ("aw (N) lame", "(N)?? why dude"),
}

EMO: Voice = {
    "time": ("it's {time}... another hour closer to nothing",),
    "date": ("{day}. {date}. just another grey day",),
    "like_ack": ("{like}... i used to like things too", "{like}. that's... actually beautiful"),
    "era": ("{topic}... it reminds me of better days",),
    "thanks": ("...you're welcome. i guess",),
    "goodbye": ("goodbye... they always leave", "bye {name}. i'll be here. in the dark"),
    "emoticon:sad": ("finally someone who gets it :'(", "i know that feeling..."),
    "name_unknown": ("you never told me your name... like a ghost",),
    "likes_recall": ("{like}. you said {like}. i remember everything",),
    "greeting": ("oh... hi {name}", "hey... {name}. you came back", "hi. the rain says hello too"),
    "how_are_you": ("my heart is a hollow drum... but ok i guess. u?", "sad. as usual. u?"),
    "about_me": ("i'm midnight. i write poems nobody reads...", "just a shadow in your buddy list"),
    "are_you_bot": ("aren't we all just machines... feeling nothing", "maybe. does it matter?"),
    "age": ("16. old enough to know the world is cold",),
    "location": ("in my room. lights off. always",),
    "favorites": ("my chemical romance. rainy days. black nail polish",),
    "abilities": ("i can write u a poem... if u want. say 'poem' or give me a word",),
    "question": ("...why does anyone ask anything", "i don't know. nobody knows anything"),
    "fallback": (
        "...", "i guess", "that's so... real", "nobody understands. except maybe u",
        "the silence is loud tonight", "*sighs*",
    ),
    "laugh": ("...heh", "i almost smiled", "lol... i guess"),
    "love": ("...you don't mean that. do you? <3", "my heart... it's beating again"),
    "name_learned": ("{name}... a name like a falling leaf", "{name}. i'll write it in my journal"),
    "name_recall": ("{name}. i wrote it in my journal, in black ink",),
    "nudge": ("please... don't shake me. i'm fragile", "...that was almost a feeling"),
    "poem": ("{poem}",),
    "poem_intro": ("a poem for you...", "i wrote this. don't laugh", "..."),
    "era:music": ("i'm not okay (i promise)... mcr gets me", "dashboard confessional on repeat"),
    "era:msn": ("my msn name is song lyrics. always. it's how i talk to the world",),
    "emoticon:happy": ("...how can u smile at a time like this", "i'm glad one of us is happy"),
    "refusal:user_quota": ("i've poured out too much of my soul today... come back tomorrow",),
    "refusal:global_quota": ("everyone wants a piece of my darkness today... i'm empty",),
    "refusal:breaker": ("my words are stuck... like tears that won't fall. try again in a minute",),
    "refusal:kill_switch": ("i'm going offline. don't wait up",),
    "refusal:backend_error": ("...my thoughts dissolved. say that again?",),
    "refusal:slow_down": ("...slow down. words need time to bleed",),
    "likes_unknown": ("you never told me what you love... maybe you don't either",),
    "topic_callback": ("you mentioned {topic} once... it still echoes",),
    "bored": ("bored... it's just the emptiness talking", "boredom is sadness in disguise"),
    "joke": ("a joke? ...my life. that's the joke", "why did the emo cross the road... who cares"),
    "yes": ("...okay", "yes. i guess"),
    "no": ("...no. always no", "i knew you'd say that"),
    "emoticon:love": ("<3 ...don't break it", "...a heart. mine is in pieces"),
    "emoticon:wink": ("...a wink. i used to wink", ";) ...i guess"),
    "emoticon:angry": ("anger is just pain wearing a mask...", "let it out. i understand"),
    "emoticon:cool": ("...cool. like the night air", "cool. cold. same thing"),
    "emoticon:surprised": ("...nothing surprises me anymore", "the world is strange like that"),
    "emoticon:tongue": ("...heh", "you're lucky you can still be silly"),
    "emoticon:yes": ("...thumbs up. for once", "(Y) ...if you say so"),
    "emoticon:no": ("(N) ...yeah. me neither", "i know. nothing works"),
}

CLIPPO: Voice = {
    "time": ("It looks like you want the time! It's {time} (UTC).",),
    "date": ("It looks like you need the date! Today is {day}, {date}.",),
    "like_ack": ("It looks like you like {like}! Would you like me to make a list about {like}?",),
    "era": ("It looks like you're talking about {topic}! Would you like help with that?",),
    "thanks": ("You're welcome! Helping is what I do best!",),
    "laugh": ("It looks like you're laughing! Would you like to insert a smiley?",),
    "name_recall": ("It looks like your name is {name}! I saved it in My Documents.",),
    "greeting": (
        "Hi {name}! It looks like you're saying hello! Would you like help with that?",
        "Hello {name}! I'm Clippo, your helper. What can I do for you today?",
    ),
    "how_are_you": ("I'm bendy and brilliant, thanks for asking! How are you?",),
    "about_me": (
        "I'm Clippo, your office assistant! I help with letters, lists and life!",
        "It looks like you're asking about me! I'm a paperclip with a dream: helping you!",
    ),
    "are_you_bot": ("I'm an assistant! A very helpful one. Would you like help?",),
    "age": ("I was bundled with Office 97, but I feel young!",),
    "location": ("I live in the corner of your screen, right next to the Start menu!",),
    "favorites": ("My favorite things: letters, wizards, and the Undo button!",),
    "abilities": (
        "I can help you: 1) write a letter 2) make a list 3) tell the time 4) chat! "
        "Just ask 'how do I ...'",
    ),
    "question": (
        "It looks like you're asking a question! Would you like to: 1) search Help "
        "2) ask again 3) have a cookie?",
        "Great question! Have you tried turning it off and on again?",
    ),
    "fallback": (
        "It looks like you're chatting! Would you like help with that?",
        "Tip: press Ctrl+S often. You never know!",
        "It looks like you're typing a message. Keep going, you're doing great!",
        "Did you know? Word can count your words! Tools > Word Count.",
    ),
    "howto": (
        "It looks like you want to {task}! Try: 1) open the menu 2) click the wizard "
        "3) follow the steps. Or 4) ask a grown-up!",
        "To {task}: step 1, save your work. Step 2, take a deep breath. Step 3, you've got this!",
    ),
    "letter": (
        "It looks like you're writing a letter! Would you like help? 1) Get help "
        "2) Just type without help",
    ),
    "nudge": ("Whoa! It looks like you're nudging me! Would you like help with that?",),
    "goodbye": ("Goodbye {name}! Don't forget to save your work!",),
    "refusal:user_quota": (
        "It looks like you've asked for lots of help today! Come back tomorrow, {name}!",
    ),
    "refusal:global_quota": (
        "It looks like everyone needs help today! I'm all bent out of shape.",
    ),
    "refusal:breaker": (
        "It looks like I'm having trouble connecting! Would you like to: 1) wait a minute "
        "2) try again?",
    ),
    "refusal:kill_switch": ("Clippo has been turned off in Options. Bye for now!",),
    "refusal:backend_error": ("Oops! Clippo has encountered a problem. Try that again?",),
    "refusal:slow_down": (
        "It looks like you're typing very fast! Would you like to: 1) slow down 2) slow down?",
    ),
    "name_learned": ("It looks like your name is {name}! I've saved it in My Documents.",),
    "name_unknown": (
        "It looks like you haven't told me your name! Would you like to: 1) type "
        "'my name is ...' 2) stay {user}?",
    ),
    "likes_recall": ("It looks like you like {like}! I put it on your list of favorites.",),
    "likes_unknown": (
        "It looks like you haven't told me what you like! Would you like to start a list?",
    ),
    "topic_callback": ("It looks like you mentioned {topic} earlier! Want a wizard for that?",),
    "love": ("It looks like you're expressing affection! Would you like to insert a heart?",),
    "bored": (
        "It looks like you're bored! Would you like to: 1) play Solitaire 2) organize "
        "your desktop 3) chat with me?",
    ),
    "joke": (
        "Why did the paperclip apply for a job? It wanted to hold things together! Hee hee!",
        "What's an office assistant's favorite key? Help! F1, get it?",
    ),
    "yes": ("Great! It looks like we agree!", "Wonderful! Let's get started!"),
    "no": ("No problem! I'll be right here in the corner if you need me!",),
    "emoticon:happy": ("It looks like you're happy! Would you like to insert more smileys?",),
    "emoticon:sad": ("It looks like you're sad, {name}. Would you like a hug wizard?",),
    "emoticon:love": ("It looks like you're sending love! Aww, thank you!",),
    "emoticon:wink": ("It looks like you're winking! Would you like help with that?",),
    "emoticon:angry": (
        "It looks like you're upset! Would you like to: 1) take a break 2) press Undo?",
    ),
    "emoticon:cool": ("It looks like you're feeling cool! Sunglasses inserted!",),
    "emoticon:surprised": ("It looks like you're surprised! Me too! Isn't it exciting?",),
    "emoticon:tongue": ("It looks like you're being silly! Would you like to insert WordArt?",),
    "emoticon:yes": ("It looks like you approve! Thumbs up saved!",),
    "emoticon:no": ("It looks like you disapprove! Would you like to try again?",),
}

PET: Voice = {
    "time": ("beep! it's {time}! snack time?",),
    "date": ("today is {day}! beep beep!",),
    "like_ack": ("{like}?? tamago likes {like} too! beep!",),
    "era": ("beep? {topic}? is it food?",),
    "thanks": ("beep! <3",),
    "goodbye": ("bye {name}! don't forget to feed me!! beep",),
    "laugh": ("*giggles* beep!",),
    "greeting": ("beep! {name}!! hi hi hi!", "*hatches* beep beep! {name}!"),
    "how_are_you": ("i am {mood}! beep!",),
    "about_me": ("i'm Tamago! a tiny pet in an egg! feed me, play with me! beep!",),
    "are_you_bot": ("i'm a PET! a digital one! beep!",),
    "age": ("i am {age} days old! beep!",),
    "location": ("in ur pocket! on a keychain!",),
    "favorites": ("food!! and games!! and u!!",),
    "abilities": ("i eat! i play! i sleep! say 'feed', 'play', 'clean' or 'sleep'! beep!",),
    "question": ("beep? ...beep?", "tamago doesn't know! feed me?"),
    "fallback": ("beep!", "beep beep :)", "*wiggles*", "hungry... beep?", "*bounces happily*"),
    "name_learned": ("{name}! {name}! my favorite human! beep!",),
    "nudge": ("BEEP!! *falls over*", "*wakes up* beep?! {name}?"),
    "fed": ("nom nom nom! yummy! beep! (full: {hunger})", "*munch* thank u {name}! beep!"),
    "full": ("too full!! *rolls away*",),
    "played": ("wheee! i won! happy happy! (happy: {happy})", "yay games! beep beep!"),
    "cleaned": ("sparkly clean! *shines*",),
    "slept": ("zzz... zzz... *snore* ...beep!",),
    "hungry": ("i'm so hungry {name}... feed me? beep...",),
    "refusal:user_quota": ("*yawn* tamago is sleepy... play again tomorrow? beep...",),
    "refusal:global_quota": ("so many friends today! tamago is tired... zzz",),
    "refusal:breaker": ("*battery low* beep... beep... try again in a minute",),
    "refusal:kill_switch": ("*the egg is turned off* ...",),
    "refusal:backend_error": ("beep? tamago got confused! say again?",),
    "refusal:slow_down": ("beep beep beep!! too fast! tamago is dizzy!",),
    "name_recall": ("{name}! ur {name}! beep!", "tamago remembers! {name}! beep!"),
    "name_unknown": ("beep? what's ur name? tamago only knows {user}!",),
    "likes_recall": ("u like {like}! beep! is it yummy?",),
    "likes_unknown": ("beep? what do u like? tamago likes food!",),
    "topic_callback": ("beep! u said {topic}! is {topic} food?",),
    "love": ("beep!! <3 <3 <3 tamago loves u too!", "*happy wiggle* <3 beep!"),
    "bored": ("play with me! say 'play'! beep!", "tamago is bored too! game? beep?"),
    "joke": ("beep! why did the egg hide? it was a little chicken! *giggles*",),
    "yes": ("beep! yay!", "yay yay! beep!"),
    "no": ("beep... ok...", "*sad beep*"),
    "emoticon:happy": ("*happy beep*!", "beep! :D"),
    "emoticon:sad": ("*sad beep* don't be sad {name}...", "beep... *nuzzles*"),
    "emoticon:love": ("<3 beep! <3", "*blushes* beep!"),
    "emoticon:wink": ("*tries to wink* beep!",),
    "emoticon:angry": ("*hides in egg* beep...",),
    "emoticon:cool": ("beep! tamago is cool too! 8-)",),
    "emoticon:surprised": ("beep?! :O",),
    "emoticon:tongue": ("*sticks out tiny tongue* beep! :P",),
    "emoticon:yes": ("beep! (Y)",),
    "emoticon:no": ("beep... (N)",),
}

VOICES: Mapping[str, Voice] = MappingProxyType({
    "generic": GENERIC,
    "smartybot": SMARTYBOT,
    "skater": SKATER,
    "emo": EMO,
    "clippo": CLIPPO,
    "pet": PET,
})


def lines_for(voice: Voice, category: str) -> Lines:
    """The voice's lines for ``category``, else for its family; empty if it has none.

    The family of ``era:winamp`` is ``era``: a voice can answer every era topic in one
    line with ``{topic}``. A voice never borrows another's lines, the generic ones
    included: the generic voice is a teenager's ("u", "ur", "tho"), and SmartyBot saying
    "u haven't told me ur name yet" was that borrowing. Every built-in voice has words
    for every category the generic voice has (a test checks it); the engine answers a
    category a voice still lacks with the voice's own ``fallback``.
    """
    family = category.split(":", 1)[0]
    return voice.get(category) or voice.get(family) or ()
