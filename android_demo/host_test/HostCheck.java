import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import org.mmedge.demo.MmedgeBridge;

/**
 * Drives the JNI bridge from the host JVM as the app does: opens a bundle, answers a prompt about
 * raw RGB images, and prints one line of JSON with the streamed pieces and the returned tokens.
 * Usage: java HostCheck BUNDLE MAX_TOKENS PROMPT [RGB_FILE WIDTH HEIGHT]...
 * A refusal prints {"error": STATUS} and exits 2.
 */
public final class HostCheck {
    static String json(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    public static void main(String[] args) throws Exception {
        String bundle = args[0];
        int maxTokens = Integer.parseInt(args[1]);
        String prompt = args[2];
        int n = (args.length - 3) / 3;
        byte[][] rgb = new byte[n][];
        int[] widths = new int[n], heights = new int[n];
        for (int i = 0; i < n; i++) {
            rgb[i] = Files.readAllBytes(Path.of(args[3 + 3 * i]));
            widths[i] = Integer.parseInt(args[4 + 3 * i]);
            heights[i] = Integer.parseInt(args[5 + 3 * i]);
        }
        List<Integer> streamed = new ArrayList<>();
        StringBuilder text = new StringBuilder();
        try (MmedgeBridge bridge = new MmedgeBridge(bundle, 1, 1024)) {
            int[] tokens = bridge.generate(rgb, widths, heights, prompt, maxTokens, 0f, 0L, (token, piece) -> {
                if (token >= 0) streamed.add(token);
                text.append(piece);
                return true;
            });
            StringBuilder out = new StringBuilder("{\"tokens\": [");
            for (int i = 0; i < tokens.length; i++) out.append(i > 0 ? ", " : "").append(tokens[i]);
            out.append("], \"streamed\": ").append(streamed).append(", \"text\": ").append(json(text.toString()));
            out.append(", \"marker\": \"").append(bridge.imageMarker()).append("\"}");
            new java.io.PrintStream(System.out, true, "UTF-8").println(out);
        } catch (MmedgeBridge.MmedgeException e) {
            System.out.println("{\"error\": \"" + e.status + "\"}");
            System.exit(2);
        }
    }
}
